-- A parent that failed through its children waits again once one of them is retried.
UPDATE roadie_jobs
SET state = 'waiting', failure = NULL, needs_review = 0, finished_at = NULL
WHERE id = :id AND state = 'failed' AND on_child_failure IS NOT NULL
RETURNING *
