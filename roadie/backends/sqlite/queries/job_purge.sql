-- Delete a batch of up to :limit jobs in the ended state :state that finished before
-- :finished_before; batches keep workers from waiting long for the write lock.
DELETE FROM roadie_jobs
WHERE id IN (
    SELECT id FROM roadie_jobs
    WHERE state = :state AND finished_at < :finished_before AND (:queue IS NULL OR queue = :queue)
    LIMIT :limit
)
