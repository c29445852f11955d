-- How many jobs match every filter given (NULL: any): what a mass action would touch.
SELECT count(*) AS jobs FROM roadie_jobs
WHERE (%(state)s::text IS NULL OR state = %(state)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(parent_id)s::bigint IS NULL OR parent_id = %(parent_id)s)
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s)
  AND (%(finished_before)s::timestamptz IS NULL OR finished_at < %(finished_before)s)
  AND (%(error)s::text IS NULL OR strpos(lower(error), lower(%(error)s)) > 0)
  AND (%(needs_review)s::boolean IS NULL OR needs_review = %(needs_review)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
