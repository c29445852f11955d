-- Delete a batch of up to %(limit)s jobs in the ended state %(state)s that finished before
-- %(finished_before)s; batches keep each transaction short.
DELETE FROM roadie_jobs
WHERE id IN (
    SELECT id FROM roadie_jobs
    WHERE state = %(state)s AND finished_at < %(finished_before)s::timestamptz
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    LIMIT %(limit)s
)
