-- Up to :limit jobs of the hour from :hour the pruner may delete (ended, not awaiting review).
SELECT id FROM roadie_jobs
WHERE finished_at >= :hour AND finished_at < :hour + 3600.0
  AND state IN ('complete', 'failed', 'cancelled') AND needs_review = 0
LIMIT :limit
