-- Take up to %(limit)s due jobs of one queue, highest priority first, then oldest, under a lease;
-- nothing while the queue is paused. Of jobs whose worker was lost before (lost_count > 0), at
-- most %(suspects)s (0 or 1) are among them: a worker holds one at a time (see 0005_suspects).
-- Due jobs come from two indexes (see 0008_scheduled): those never scheduled or already
-- staged, and scheduled ones that came due since the last staging.
WITH fresh AS (
    SELECT id, priority FROM roadie_jobs
    WHERE state = 'pending' AND NOT scheduled AND queue = %(queue)s
      AND run_at <= coalesce(%(now)s::timestamptz, now()) AND lost_count = 0
      AND NOT EXISTS (SELECT 1 FROM roadie_queues WHERE name = %(queue)s AND paused)
    ORDER BY priority DESC, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), came_due AS (
    SELECT id, priority FROM roadie_jobs
    WHERE state = 'pending' AND scheduled AND run_at <= coalesce(%(now)s::timestamptz, now())
      AND queue = %(queue)s AND lost_count = 0
      AND NOT EXISTS (SELECT 1 FROM roadie_queues WHERE name = %(queue)s AND paused)
    ORDER BY priority DESC, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), suspect AS (
    SELECT id, priority FROM roadie_jobs
    WHERE state = 'pending' AND queue = %(queue)s AND run_at <= coalesce(%(now)s::timestamptz, now())
      AND lost_count > 0
      AND NOT EXISTS (SELECT 1 FROM roadie_queues WHERE name = %(queue)s AND paused)
    ORDER BY priority DESC, id
    LIMIT %(suspects)s
    FOR UPDATE SKIP LOCKED
)
UPDATE roadie_jobs AS job
SET state = 'running',
    attempt = job.attempt + 1,
    locked_by = %(worker_id)s,
    started_at = coalesce(%(now)s::timestamptz, now()),
    lock_expires_at = coalesce(%(now)s::timestamptz, now()) + %(lease)s * interval '1 second'
FROM (
    SELECT id FROM (
        SELECT * FROM fresh UNION ALL SELECT * FROM came_due UNION ALL SELECT * FROM suspect
    ) AS candidate
    ORDER BY priority DESC, id
    LIMIT %(limit)s
) AS next
WHERE job.id = next.id
RETURNING job.*
