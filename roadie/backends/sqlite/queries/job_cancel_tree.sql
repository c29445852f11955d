-- Cancel the jobs under :id that have not started (pending) or wait for their own children;
-- running ones are left to finish.
WITH RECURSIVE tree (id) AS (
    SELECT id FROM roadie_jobs WHERE parent_id = :id
    UNION ALL
    SELECT job.id FROM roadie_jobs AS job JOIN tree ON job.parent_id = tree.id
)
UPDATE roadie_jobs
SET state = 'cancelled', finished_at = coalesce(:now, (julianday('now') - 2440587.5) * 86400.0)
WHERE id IN (SELECT id FROM tree) AND state IN ('pending', 'waiting')
RETURNING id
