-- An administrator cancels a job that has not ended. A running job's worker finds its writes
-- refused and its context cancelled at its next heartbeat.
UPDATE roadie_jobs
SET state = 'cancelled',
    finished_at = coalesce(:now, (julianday('now') - 2440587.5) * 86400.0),
    locked_by = NULL,
    lock_expires_at = NULL,
    attempts = CASE WHEN state = 'running' THEN json_insert(attempts, '$[#]', json_object(
        'attempt', attempt, 'worker', locked_by,
        'started_at', strftime('%Y-%m-%dT%H:%M:%fZ', started_at, 'unixepoch'),
        'finished_at', strftime('%Y-%m-%dT%H:%M:%fZ', coalesce(:now, (julianday('now') - 2440587.5) * 86400.0), 'unixepoch'),
        'outcome', 'cancelled', 'error', 'cancelled by an administrator', 'traceback', NULL))
        ELSE attempts END
WHERE id = :id AND state IN ('pending', 'running', 'waiting')
RETURNING *
