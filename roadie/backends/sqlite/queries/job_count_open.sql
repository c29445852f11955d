-- A parent's jobs (children and callbacks) that have not ended yet.
SELECT count(*) AS open FROM roadie_jobs
WHERE parent_id = :parent_id AND state IN ('pending', 'running', 'waiting')
