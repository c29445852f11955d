-- Fenced: back to pending after :delay seconds, the error kept on the job and its attempt.
-- :held is how long the job waited in its worker's buffer after the claim stamped started_at:
-- the attempt's real start is started_at + :held.
UPDATE roadie_jobs
SET state = 'pending',
    run_at = coalesce(:now, (julianday('now') - 2440587.5) * 86400.0) + :delay,
    scheduled = :delay > 0,  -- see 0008_scheduled
    error = :error,
    started_at = started_at + :held,
    locked_by = NULL,
    lock_expires_at = NULL,
    attempts = json_insert(attempts, '$[#]', json_object(
        'attempt', attempt, 'worker', locked_by,
        'started_at', strftime('%Y-%m-%dT%H:%M:%fZ', started_at + :held, 'unixepoch'),
        'finished_at', strftime('%Y-%m-%dT%H:%M:%fZ', coalesce(:now, (julianday('now') - 2440587.5) * 86400.0), 'unixepoch'),
        'outcome', :outcome, 'error', :error, 'traceback', :traceback))
WHERE id = :id AND state = 'running' AND attempt = :attempt AND locked_by = :worker_id
