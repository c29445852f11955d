-- The start of the oldest hour holding a job the pruner may delete: ended before %(before)s (a
-- whole hour), and not a failure awaiting review.
SELECT to_timestamp(floor(extract(epoch FROM min(finished_at)) / 3600) * 3600) AS hour
FROM roadie_jobs
WHERE finished_at < %(before)s::timestamptz AND state IN ('complete', 'failed', 'cancelled')
  AND NOT needs_review
