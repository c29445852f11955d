-- An administrator dealt with a failed job: it stays failed and leaves the review list.
UPDATE roadie_jobs
SET needs_review = false, review_note = %(note)s, reviewed_at = coalesce(%(now)s::timestamptz, now())
WHERE id = %(id)s AND needs_review
RETURNING *
