UPDATE roadie_jobs
SET lock_expires_at = coalesce(%(now)s::timestamptz, now()) + %(lease)s * interval '1 second'
WHERE state = 'running' AND locked_by = %(worker_id)s AND id = ANY(%(ids)s)
RETURNING id, attempt
