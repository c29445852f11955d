-- Scheduled jobs that came due go back into the claim's index (see 0008_scheduled), up to
-- :limit of them, oldest due first.
UPDATE roadie_jobs SET scheduled = 0
WHERE id IN (
    SELECT id FROM roadie_jobs
    WHERE state = 'pending' AND scheduled = 1
      AND run_at <= coalesce(:now, (julianday('now') - 2440587.5) * 86400.0)
    ORDER BY run_at
    LIMIT :limit
)
