-- A waiting parent ends: complete, or failed (flagged for review) with %(failure)s saying why.
UPDATE roadie_jobs
SET state = %(state)s,
    failure = %(failure)s,
    error = coalesce(%(error)s, error),
    needs_review = (%(state)s::text = 'failed'),
    finished_at = coalesce(%(now)s::timestamptz, now())
WHERE id = %(id)s AND state = 'waiting'
RETURNING *
