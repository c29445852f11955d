-- Fenced: failed for good, with %(failure)s saying why.
UPDATE roadie_jobs
SET state = 'failed',
    needs_review = true,
    failure = %(failure)s,
    error = %(error)s,
    finished_at = coalesce(%(now)s::timestamptz, now()),
    locked_by = NULL,
    lock_expires_at = NULL,
    attempts = attempts || jsonb_build_array(jsonb_build_object(
        'attempt', attempt, 'worker', locked_by, 'started_at', started_at,
        'finished_at', coalesce(%(now)s::timestamptz, now()), 'outcome', %(outcome)s::text, 'error', %(error)s::text, 'traceback', %(traceback)s::text))
WHERE id = %(id)s AND state = 'running' AND attempt = %(attempt)s AND locked_by = %(worker_id)s
