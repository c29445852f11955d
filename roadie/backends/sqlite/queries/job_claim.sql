-- Take up to :limit due jobs of one queue, highest priority first, then oldest, under a lease;
-- nothing while the queue is paused. Of jobs whose worker was lost before (lost_count > 0), at
-- most :suspects (0 or 1) are among them: a worker holds one at a time (see 0005_suspects).
-- Due jobs come from two indexes (see 0008_scheduled): those never scheduled or already
-- staged, and scheduled ones that came due since the last staging.
UPDATE roadie_jobs
SET state = 'running',
    attempt = attempt + 1,
    locked_by = :worker_id,
    started_at = coalesce(:now, (julianday('now') - 2440587.5) * 86400.0),
    lock_expires_at = coalesce(:now, (julianday('now') - 2440587.5) * 86400.0) + :lease
WHERE id IN (
    SELECT id FROM (
        SELECT id, priority FROM (
            SELECT id, priority FROM roadie_jobs
            WHERE state = 'pending' AND scheduled = 0 AND queue = :queue AND lost_count = 0
              AND run_at <= coalesce(:now, (julianday('now') - 2440587.5) * 86400.0)
            ORDER BY priority DESC, id
            LIMIT :limit
        )
        UNION ALL
        SELECT id, priority FROM (
            SELECT id, priority FROM roadie_jobs
            WHERE state = 'pending' AND scheduled = 1
              AND run_at <= coalesce(:now, (julianday('now') - 2440587.5) * 86400.0)
              AND queue = :queue AND lost_count = 0
            ORDER BY priority DESC, id
            LIMIT :limit
        )
        UNION ALL
        SELECT id, priority FROM (
            SELECT id, priority FROM roadie_jobs
            WHERE state = 'pending' AND queue = :queue AND lost_count > 0
              AND run_at <= coalesce(:now, (julianday('now') - 2440587.5) * 86400.0)
            ORDER BY priority DESC, id
            LIMIT :suspects
        )
    )
    ORDER BY priority DESC, id
    LIMIT :limit
)
AND NOT EXISTS (SELECT 1 FROM roadie_queues WHERE name = :queue AND paused = 1)
RETURNING *
