-- Administrative actions, newest first, optionally of one kind or by one actor.
SELECT * FROM roadie_audit
WHERE (%(action)s::text IS NULL OR action = %(action)s)
  AND (%(actor)s::text IS NULL OR actor = %(actor)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s
