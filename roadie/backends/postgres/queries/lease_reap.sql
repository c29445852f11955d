-- Jobs whose lease ran out (or, given %(dead_before)s, whose worker stopped or has been silent
-- since then) return to the queue ("worker lost"), or fail after %(max_lost)s losses
-- or when no attempt is left. Two reapers racing take each job once: the row is re-checked.
-- Rows another transaction has locked are skipped, not waited for: a worker cut off in the
-- middle of a completion transaction leaves its server session holding that job's row until
-- the server notices (TCP keepalives), and waiting on it stalled every reaper of the cluster.
UPDATE roadie_jobs
SET state = CASE WHEN lost_count + 1 >= %(max_lost)s OR attempt >= max_attempts
                 THEN 'failed' ELSE 'pending' END,
    failure = CASE WHEN lost_count + 1 >= %(max_lost)s THEN 'lost'
                   WHEN attempt >= max_attempts THEN 'exhausted' END,
    needs_review = (lost_count + 1 >= %(max_lost)s OR attempt >= max_attempts),
    finished_at = CASE WHEN lost_count + 1 >= %(max_lost)s OR attempt >= max_attempts
                       THEN coalesce(%(now)s::timestamptz, now()) END,
    run_at = coalesce(%(now)s::timestamptz, now()),
    scheduled = false,
    lost_count = lost_count + 1,
    error = 'worker lost',
    locked_by = NULL,
    lock_expires_at = NULL,
    attempts = attempts || jsonb_build_array(jsonb_build_object(
        'attempt', attempt, 'worker', locked_by, 'started_at', started_at,
        'finished_at', coalesce(%(now)s::timestamptz, now()), 'outcome', 'lost'::text, 'error', 'worker lost'::text, 'traceback', NULL::text))
WHERE id IN (
    SELECT id FROM roadie_jobs
    WHERE state = 'running'
      AND (lock_expires_at < coalesce(%(now)s::timestamptz, now())
           OR (%(dead_before)s::timestamptz IS NOT NULL AND locked_by IN (
               SELECT id FROM roadie_workers
               WHERE stopped_at IS NOT NULL OR heartbeat_at < %(dead_before)s::timestamptz)))
    FOR UPDATE SKIP LOCKED
)
RETURNING *
