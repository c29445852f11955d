-- Take up to :limit due jobs of one queue, highest priority first, then oldest, under a lease;
-- nothing while the queue is paused.
UPDATE roadie_jobs
SET state = 'running',
    attempt = attempt + 1,
    locked_by = :worker_id,
    started_at = coalesce(:now, (julianday('now') - 2440587.5) * 86400.0),
    lock_expires_at = coalesce(:now, (julianday('now') - 2440587.5) * 86400.0) + :lease
WHERE id IN (
    SELECT id FROM roadie_jobs
    WHERE state = 'pending' AND queue = :queue AND run_at <= coalesce(:now, (julianday('now') - 2440587.5) * 86400.0)
      AND NOT EXISTS (SELECT 1 FROM roadie_queues WHERE name = :queue AND paused = 1)
    ORDER BY priority DESC, id
    LIMIT :limit
)
RETURNING *
