-- Pending jobs that are not due yet (delayed, or waiting out a retry's backoff) are "scheduled"
-- and leave the claim's index. Before, every claim read past all such jobs of its queue that sat
-- ahead of the due ones: with 100,000 of them (a campaign for tomorrow, or retries while a
-- service is down) a drain ran at a quarter of its speed. The flag is only a hint for the
-- indexes: the claim also takes scheduled jobs that came due (by the second index), and the
-- maintenance loop moves those back into the first (job_stage), so none waits for it.
-- Building the indexes reads the table once, blocking writes meanwhile (about a second per
-- million rows).
ALTER TABLE roadie_jobs ADD COLUMN scheduled boolean NOT NULL DEFAULT false;
UPDATE roadie_jobs SET scheduled = true WHERE state = 'pending' AND run_at > now();
DROP INDEX roadie_jobs_pending;
CREATE INDEX roadie_jobs_pending ON roadie_jobs (queue, priority DESC, id)
    WHERE state = 'pending' AND NOT scheduled;
CREATE INDEX roadie_jobs_scheduled ON roadie_jobs (run_at) WHERE state = 'pending' AND scheduled;
