-- Fenced: failed for good, with %(failure)s saying why.
-- %(held)s is how long the job waited in its worker's buffer after the claim stamped started_at:
-- the attempt's real start is started_at + %(held)s.
UPDATE roadie_jobs
SET state = 'failed',
    needs_review = true,
    failure = %(failure)s,
    error = %(error)s,
    finished_at = coalesce(%(now)s::timestamptz, now()),
    started_at = started_at + %(held)s * interval '1 second',
    locked_by = NULL,
    lock_expires_at = NULL,
    attempts = attempts || jsonb_build_array(jsonb_build_object(
        'attempt', attempt, 'worker', locked_by, 'started_at', started_at + %(held)s * interval '1 second',
        'finished_at', coalesce(%(now)s::timestamptz, now()), 'outcome', %(outcome)s::text, 'error', %(error)s::text, 'traceback', %(traceback)s::text))
WHERE id = %(id)s AND state = 'running' AND attempt = %(attempt)s AND locked_by = %(worker_id)s
