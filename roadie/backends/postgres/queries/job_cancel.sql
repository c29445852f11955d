-- An administrator cancels a job that has not ended. A running job's worker finds its writes
-- refused and its context cancelled at its next heartbeat.
UPDATE roadie_jobs
SET state = 'cancelled',
    finished_at = coalesce(%(now)s::timestamptz, now()),
    locked_by = NULL,
    lock_expires_at = NULL,
    attempts = CASE WHEN state = 'running' THEN attempts || jsonb_build_array(jsonb_build_object(
        'attempt', attempt, 'worker', locked_by, 'started_at', started_at,
        'finished_at', coalesce(%(now)s::timestamptz, now()), 'outcome', 'cancelled'::text,
        'error', 'cancelled by an administrator'::text, 'traceback', NULL::text))
        ELSE attempts END
WHERE id = %(id)s AND state IN ('pending', 'running', 'waiting')
RETURNING *
