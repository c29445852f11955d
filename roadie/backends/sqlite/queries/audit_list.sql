-- Administrative actions, newest first, optionally of one kind or by one actor.
SELECT * FROM roadie_audit
WHERE (:action IS NULL OR action = :action)
  AND (:actor IS NULL OR actor = :actor)
  AND (:before_id IS NULL OR id < :before_id)
ORDER BY id DESC
LIMIT :limit
