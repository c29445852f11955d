UPDATE roadie_jobs SET progress = %(progress)s::json
WHERE id = %(id)s AND state = 'running' AND attempt = %(attempt)s AND locked_by = %(worker_id)s
