-- The start of the oldest hour holding a job the pruner may delete: ended before :before (a whole
-- hour), and not a failure awaiting review.
SELECT floor(min(finished_at) / 3600.0) * 3600.0 AS hour
FROM roadie_jobs
WHERE finished_at < :before AND state IN ('complete', 'failed', 'cancelled') AND needs_review = 0
