-- Up to %(limit)s jobs of the hour from %(hour)s the pruner may delete (ended, not awaiting
-- review), locked until the batch commits; another pruner's rows are skipped.
SELECT id FROM roadie_jobs
WHERE finished_at >= %(hour)s::timestamptz
  AND finished_at < %(hour)s::timestamptz + interval '1 hour'
  AND state IN ('complete', 'failed', 'cancelled') AND NOT needs_review
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
