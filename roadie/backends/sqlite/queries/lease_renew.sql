-- :ids is a JSON array of the job ids this worker holds.
UPDATE roadie_jobs
SET lock_expires_at = coalesce(:now, (julianday('now') - 2440587.5) * 86400.0) + :lease
WHERE state = 'running' AND locked_by = :worker_id AND id IN (SELECT value FROM json_each(:ids))
RETURNING id, attempt
