-- How many jobs match every filter given (NULL: any): what a mass action would touch.
SELECT count(*) AS jobs FROM roadie_jobs
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
