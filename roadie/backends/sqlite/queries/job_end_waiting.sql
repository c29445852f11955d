-- A waiting parent ends: complete, or failed (flagged for review) with :failure saying why.
UPDATE roadie_jobs
SET state = :state,
    failure = :failure,
    error = coalesce(:error, error),
    needs_review = (:state = 'failed'),
    finished_at = coalesce(:now, (julianday('now') - 2440587.5) * 86400.0)
WHERE id = :id AND state = 'waiting'
RETURNING *
