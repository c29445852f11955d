-- Fenced on (id, attempt, locked_by): a worker that lost its lease changes nothing.
-- %(state)s is 'complete', or 'waiting' when the handler spawned children (then the
-- parent's rules are kept for the children's ends).
-- %(held)s is how long the job waited in its worker's buffer after the claim stamped started_at:
-- the attempt's real start is started_at + %(held)s.
UPDATE roadie_jobs
SET state = %(state)s,
    result = %(result)s::json,
    finished_at = CASE WHEN %(state)s::text = 'complete' THEN coalesce(%(now)s::timestamptz, now()) END,
    on_child_complete = %(on_child_complete)s,
    on_complete = %(on_complete)s,
    on_child_failure = %(on_child_failure)s,
    started_at = started_at + %(held)s * interval '1 second',
    locked_by = NULL,
    lock_expires_at = NULL,
    attempts = attempts || jsonb_build_array(jsonb_build_object(
        'attempt', attempt, 'worker', locked_by, 'started_at', started_at + %(held)s * interval '1 second',
        'finished_at', coalesce(%(now)s::timestamptz, now()), 'outcome', 'complete'::text, 'error', NULL::text, 'traceback', NULL::text))
WHERE id = %(id)s AND state = 'running' AND attempt = %(attempt)s AND locked_by = %(worker_id)s
