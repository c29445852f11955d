-- Callback jobs of one parent, on its queue: %(callbacks)s is a JSON array of [callback_key,
-- arguments as JSON text] pairs, one per ending heard (a batch's children, or the parent's
-- on_complete). A key makes a second delivery of the same ending insert nothing.
INSERT INTO roadie_jobs
    (queue, task, args, priority, max_attempts, created_at, run_at, parent_id, callback_key)
SELECT %(queue)s, %(task)s, (callback ->> 1)::json, %(priority)s, %(max_attempts)s,
       coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now()),
       %(parent_id)s, callback ->> 0
FROM json_array_elements(%(callbacks)s::json) WITH ORDINALITY AS batch (callback, position)
ORDER BY position
ON CONFLICT (callback_key) WHERE callback_key IS NOT NULL DO NOTHING
