-- Fenced on (id, attempt, locked_by): a worker that lost its lease changes nothing.
-- :state is 'complete', or 'waiting' when the handler spawned children (then the
-- parent's rules are kept for the children's ends).
-- :held is how long the job waited in its worker's buffer after the claim stamped started_at:
-- the attempt's real start is started_at + :held.
UPDATE roadie_jobs
SET state = :state,
    result = :result,
    finished_at = CASE WHEN :state = 'complete' THEN coalesce(:now, (julianday('now') - 2440587.5) * 86400.0) END,
    on_child_complete = :on_child_complete,
    on_complete = :on_complete,
    on_child_failure = :on_child_failure,
    started_at = started_at + :held,
    locked_by = NULL,
    lock_expires_at = NULL,
    attempts = json_insert(attempts, '$[#]', json_object(
        'attempt', attempt, 'worker', locked_by,
        'started_at', strftime('%Y-%m-%dT%H:%M:%fZ', started_at + :held, 'unixepoch'),
        'finished_at', strftime('%Y-%m-%dT%H:%M:%fZ', coalesce(:now, (julianday('now') - 2440587.5) * 86400.0), 'unixepoch'),
        'outcome', 'complete', 'error', NULL, 'traceback', NULL))
WHERE id = :id AND state = 'running' AND attempt = :attempt AND locked_by = :worker_id
