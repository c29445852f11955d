-- An administrator dealt with a failed job: it stays failed and leaves the review list.
UPDATE roadie_jobs
SET needs_review = 0, review_note = :note, reviewed_at = coalesce(:now, (julianday('now') - 2440587.5) * 86400.0)
WHERE id = :id AND needs_review = 1
RETURNING *
