UPDATE roadie_jobs SET progress = :progress
WHERE id = :id AND state = 'running' AND attempt = :attempt AND locked_by = :worker_id
