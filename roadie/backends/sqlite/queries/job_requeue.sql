-- An administrator retries an ended job: a new attempt (numbers keep counting) with a fresh
-- allowance of :allowance attempts, due now, off the review list.
UPDATE roadie_jobs
SET state = 'pending',
    run_at = coalesce(:now, (julianday('now') - 2440587.5) * 86400.0),
    finished_at = NULL,
    failure = NULL,
    needs_review = 0,
    lost_count = 0,
    max_attempts = attempt + :allowance
WHERE id = :id AND state IN ('failed', 'cancelled')
RETURNING *
