-- An administrator retries an ended job: a new attempt (numbers keep counting) with a fresh
-- allowance of %(allowance)s attempts, due now, off the review list.
UPDATE roadie_jobs
SET state = 'pending',
    run_at = coalesce(%(now)s::timestamptz, now()),
    finished_at = NULL,
    failure = NULL,
    needs_review = false,
    lost_count = 0,
    max_attempts = attempt + %(allowance)s
WHERE id = %(id)s AND state IN ('failed', 'cancelled')
RETURNING *
