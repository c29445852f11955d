-- Jobs that recorded an error and may hold attempts since :since (ended since then, or still
-- open), newest first: the material `roadie failures` groups.
SELECT * FROM roadie_jobs
WHERE error IS NOT NULL AND (finished_at IS NULL OR finished_at >= :since)
  AND (:queue IS NULL OR queue = :queue)
ORDER BY id DESC
LIMIT :limit
