-- Per queue: attempts that ended since :since and sent their job back to the queue (retry, lost
-- worker, expiry); the last attempt of an ended job is not one.
SELECT job.queue, count(*) AS retries
FROM roadie_jobs AS job, json_each(job.attempts) AS record
WHERE (job.attempt > 1 OR job.state = 'pending')
  AND (job.finished_at IS NULL OR job.finished_at >= :since)
  AND (:queue IS NULL OR job.queue = :queue)
  AND json_extract(record.value, '$.outcome') IN ('retry', 'lost', 'expired')
  AND json_extract(record.value, '$.finished_at') >= strftime('%Y-%m-%dT%H:%M:%fZ', :since, 'unixepoch')
  AND (json_extract(record.value, '$.attempt') < job.attempt OR job.state = 'pending')
GROUP BY job.queue
