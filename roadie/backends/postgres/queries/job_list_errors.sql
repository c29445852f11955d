-- Jobs that recorded an error and may hold attempts since %(since)s (ended since then, or
-- still open), newest first: the material `roadie failures` groups.
SELECT * FROM roadie_jobs
WHERE error IS NOT NULL AND (finished_at IS NULL OR finished_at >= %(since)s::timestamptz)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
ORDER BY id DESC
LIMIT %(limit)s
