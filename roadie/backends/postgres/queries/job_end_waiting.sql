-- A waiting parent ends: complete, or failed (flagged for review) with %(failure)s saying why.
-- finished_at is clock_timestamp(), not now(): now() is when this transaction began, and jobs
-- under the parent that began later may have committed (with a later finished_at) before it.
UPDATE roadie_jobs
SET state = %(state)s,
    failure = %(failure)s,
    error = coalesce(%(error)s, error),
    needs_review = (%(state)s::text = 'failed'),
    finished_at = coalesce(%(now)s::timestamptz, clock_timestamp())
WHERE id = %(id)s AND state = 'waiting'
RETURNING *
