-- Scheduled jobs that came due go back into the claim's index (see 0008_scheduled), up to
-- %(limit)s of them, oldest due first. A job a claim holds is skipped: the claim takes it anyway.
UPDATE roadie_jobs SET scheduled = false
WHERE id IN (
    SELECT id FROM roadie_jobs
    WHERE state = 'pending' AND scheduled AND run_at <= coalesce(%(now)s::timestamptz, now())
    ORDER BY run_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
