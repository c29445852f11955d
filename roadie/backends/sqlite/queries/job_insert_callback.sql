-- A callback job on its parent's queue; its key makes a second delivery insert nothing.
INSERT INTO roadie_jobs
    (queue, task, args, priority, max_attempts, created_at, run_at, parent_id, callback_key)
VALUES (:queue, :task, :args, :priority, :max_attempts, coalesce(:now, (julianday('now') - 2440587.5) * 86400.0), coalesce(:now, (julianday('now') - 2440587.5) * 86400.0), :parent_id, :callback_key)
ON CONFLICT (callback_key) WHERE callback_key IS NOT NULL DO NOTHING
