-- A page of the jobs matching every filter given (NULL: any), newest first; the next page
-- starts below the last id shown.
SELECT * FROM roadie_jobs
WHERE (:state IS NULL OR state = :state)
  AND (:queue IS NULL OR queue = :queue)
  AND (:task IS NULL OR task = :task)
  AND (:parent_id IS NULL OR parent_id = :parent_id)
  AND (:since IS NULL OR created_at >= :since)
  AND (:until IS NULL OR created_at < :until)
  AND (:finished_before IS NULL OR finished_at < :finished_before)
  AND (:error IS NULL OR instr(lower(error), lower(:error)) > 0)
  AND (:needs_review IS NULL OR needs_review = :needs_review)
  AND (:before_id IS NULL OR id < :before_id)
ORDER BY id DESC
LIMIT :limit
