-- Fenced on (id, attempt, locked_by): a worker that lost its lease changes nothing.
UPDATE roadie_jobs
SET state = 'complete',
    result = %(result)s::json,
    finished_at = coalesce(%(now)s::timestamptz, now()),
    locked_by = NULL,
    lock_expires_at = NULL,
    attempts = attempts || jsonb_build_array(jsonb_build_object(
        'attempt', attempt, 'worker', locked_by, 'started_at', started_at,
        'finished_at', coalesce(%(now)s::timestamptz, now()), 'outcome', 'complete'::text, 'error', NULL::text, 'traceback', NULL::text))
WHERE id = %(id)s AND state = 'running' AND attempt = %(attempt)s AND locked_by = %(worker_id)s
