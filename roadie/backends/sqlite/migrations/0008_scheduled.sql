-- Pending jobs that are not due yet (delayed, or waiting out a retry's backoff) are "scheduled"
-- and leave the claim's index. Before, every claim read past all such jobs of its queue that sat
-- ahead of the due ones: with 100,000 of them (a campaign for tomorrow, or retries while a
-- service is down) a drain ran at a quarter of its speed. The flag is only a hint for the
-- indexes: the claim also takes scheduled jobs that came due (by the second index), and the
-- maintenance loop moves those back into the first (job_stage), so none waits for it.
ALTER TABLE roadie_jobs ADD COLUMN scheduled INTEGER NOT NULL DEFAULT 0;
UPDATE roadie_jobs SET scheduled = 1
WHERE state = 'pending' AND run_at > (julianday('now') - 2440587.5) * 86400.0;
DROP INDEX roadie_jobs_pending;
CREATE INDEX roadie_jobs_pending ON roadie_jobs (queue, priority DESC, id)
    WHERE state = 'pending' AND scheduled = 0;
CREATE INDEX roadie_jobs_scheduled ON roadie_jobs (run_at) WHERE state = 'pending' AND scheduled = 1;
