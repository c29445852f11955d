-- Fenced: back to pending after %(delay)s seconds, the error kept on the job and its attempt.
-- %(held)s is how long the job waited in its worker's buffer after the claim stamped started_at:
-- the attempt's real start is started_at + %(held)s.
UPDATE roadie_jobs
SET state = 'pending',
    run_at = coalesce(%(now)s::timestamptz, now()) + %(delay)s * interval '1 second',
    scheduled = %(delay)s > 0,  -- see 0008_scheduled
    error = %(error)s,
    started_at = started_at + %(held)s * interval '1 second',
    locked_by = NULL,
    lock_expires_at = NULL,
    attempts = attempts || jsonb_build_array(jsonb_build_object(
        'attempt', attempt, 'worker', locked_by, 'started_at', started_at + %(held)s * interval '1 second',
        'finished_at', coalesce(%(now)s::timestamptz, now()), 'outcome', %(outcome)s::text, 'error', %(error)s::text, 'traceback', %(traceback)s::text))
WHERE id = %(id)s AND state = 'running' AND attempt = %(attempt)s AND locked_by = %(worker_id)s
