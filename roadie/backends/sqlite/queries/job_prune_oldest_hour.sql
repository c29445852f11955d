-- The start of the oldest hour holding a job the pruner may delete: ended before :before (a whole
-- hour), and not a failure awaiting review. (CAST, not floor(): SQLite may lack math functions.)
SELECT CAST(min(finished_at) / 3600.0 AS INTEGER) * 3600.0 AS hour  -- floor: times are positive
FROM roadie_jobs
WHERE finished_at < :before AND state IN ('complete', 'failed', 'cancelled') AND needs_review = 0
