-- An administrator retries an ended job: a new attempt (numbers keep counting) with a fresh
-- allowance of %(allowance)s attempts, due now, off the review list. New %(args)s replace the old
-- ones, which are kept in args_history.
UPDATE roadie_jobs
SET state = 'pending',
    run_at = coalesce(%(now)s::timestamptz, now()),
    scheduled = false,
    finished_at = NULL,
    failure = NULL,
    needs_review = false,
    lost_count = 0,
    max_attempts = attempt + %(allowance)s,
    args = coalesce(%(args)s::json, args),
    args_history = CASE WHEN %(args)s::json IS NULL THEN args_history
        ELSE args_history || jsonb_build_array(jsonb_build_object(
            'args', args::jsonb, 'replaced_at', coalesce(%(now)s::timestamptz, now()), 'attempt', attempt)) END
WHERE id = %(id)s AND state IN ('failed', 'cancelled')
RETURNING *
