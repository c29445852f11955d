-- Take up to %(limit)s due jobs of one queue, highest priority first, then oldest, under a lease;
-- nothing while the queue is paused.
WITH next AS (
    SELECT id FROM roadie_jobs
    WHERE state = 'pending' AND queue = %(queue)s AND run_at <= coalesce(%(now)s::timestamptz, now())
      AND NOT EXISTS (SELECT 1 FROM roadie_queues WHERE name = %(queue)s AND paused)
    ORDER BY priority DESC, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE roadie_jobs AS job
SET state = 'running',
    attempt = job.attempt + 1,
    locked_by = %(worker_id)s,
    started_at = coalesce(%(now)s::timestamptz, now()),
    lock_expires_at = coalesce(%(now)s::timestamptz, now()) + %(lease)s * interval '1 second'
FROM next
WHERE job.id = next.id
RETURNING job.*
