-- Per queue: attempts that ended since %(since)s and sent their job back to the queue (retry,
-- lost worker, expiry); the last attempt of an ended job is not one.
SELECT job.queue, count(*) AS retries
FROM roadie_jobs AS job, jsonb_array_elements(job.attempts) AS record
WHERE (job.attempt > 1 OR job.state = 'pending')
  AND (job.finished_at IS NULL OR job.finished_at >= %(since)s::timestamptz)
  AND (%(queue)s::text IS NULL OR job.queue = %(queue)s)
  AND record->>'outcome' IN ('retry', 'lost', 'expired')
  AND (record->>'finished_at')::timestamptz >= %(since)s::timestamptz
  AND ((record->>'attempt')::integer < job.attempt OR job.state = 'pending')
GROUP BY job.queue
