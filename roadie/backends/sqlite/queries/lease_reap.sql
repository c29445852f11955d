-- Jobs whose lease ran out (or, given :dead_before, whose worker stopped or has been silent
-- since then) return to the queue ("worker lost"), or fail after :max_lost losses
-- or when no attempt is left. Two reapers racing take each job once: the row is re-checked.
UPDATE roadie_jobs
SET state = CASE WHEN lost_count + 1 >= :max_lost OR attempt >= max_attempts
                 THEN 'failed' ELSE 'pending' END,
    failure = CASE WHEN lost_count + 1 >= :max_lost THEN 'lost'
                   WHEN attempt >= max_attempts THEN 'exhausted' END,
    needs_review = (lost_count + 1 >= :max_lost OR attempt >= max_attempts),
    finished_at = CASE WHEN lost_count + 1 >= :max_lost OR attempt >= max_attempts
                       THEN coalesce(:now, (julianday('now') - 2440587.5) * 86400.0) END,
    run_at = coalesce(:now, (julianday('now') - 2440587.5) * 86400.0),
    scheduled = 0,
    lost_count = lost_count + 1,
    error = 'worker lost',
    locked_by = NULL,
    lock_expires_at = NULL,
    attempts = json_insert(attempts, '$[#]', json_object(
        'attempt', attempt, 'worker', locked_by,
        'started_at', strftime('%Y-%m-%dT%H:%M:%fZ', started_at, 'unixepoch'),
        'finished_at', strftime('%Y-%m-%dT%H:%M:%fZ', coalesce(:now, (julianday('now') - 2440587.5) * 86400.0), 'unixepoch'),
        'outcome', 'lost', 'error', 'worker lost', 'traceback', NULL))
WHERE state = 'running'
  AND (lock_expires_at < coalesce(:now, (julianday('now') - 2440587.5) * 86400.0)
       OR (:dead_before IS NOT NULL AND locked_by IN (
           SELECT id FROM roadie_workers
           WHERE stopped_at IS NOT NULL OR heartbeat_at < :dead_before)))
RETURNING *
