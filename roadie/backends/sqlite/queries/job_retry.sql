-- Fenced: back to pending after :delay seconds, the error kept on the job and its attempt.
UPDATE roadie_jobs
SET state = 'pending',
    run_at = coalesce(:now, (julianday('now') - 2440587.5) * 86400.0) + :delay,
    error = :error,
    locked_by = NULL,
    lock_expires_at = NULL,
    attempts = json_insert(attempts, '$[#]', json_object(
        'attempt', attempt, 'worker', locked_by,
        'started_at', strftime('%Y-%m-%dT%H:%M:%fZ', started_at, 'unixepoch'),
        'finished_at', strftime('%Y-%m-%dT%H:%M:%fZ', coalesce(:now, (julianday('now') - 2440587.5) * 86400.0), 'unixepoch'),
        'outcome', :outcome, 'error', :error, 'traceback', :traceback))
WHERE id = :id AND state = 'running' AND attempt = :attempt AND locked_by = :worker_id
