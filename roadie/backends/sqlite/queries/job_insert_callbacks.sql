-- Callback jobs of one parent, on its queue: :callbacks is a JSON array of [callback_key,
-- arguments as JSON text] pairs, one per ending heard (a batch's children, or the parent's
-- on_complete). A key makes a second delivery of the same ending insert nothing.
INSERT INTO roadie_jobs
    (queue, task, args, priority, max_attempts, created_at, run_at, parent_id, callback_key)
SELECT :queue, :task, value ->> 1, :priority, :max_attempts,
       coalesce(:now, (julianday('now') - 2440587.5) * 86400.0),
       coalesce(:now, (julianday('now') - 2440587.5) * 86400.0),
       :parent_id, value ->> 0
FROM json_each(:callbacks)
WHERE true
ORDER BY key
ON CONFLICT (callback_key) WHERE callback_key IS NOT NULL DO NOTHING
