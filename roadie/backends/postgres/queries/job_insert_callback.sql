-- A callback job on its parent's queue; its key makes a second delivery insert nothing.
INSERT INTO roadie_jobs
    (queue, task, args, priority, max_attempts, created_at, run_at, parent_id, callback_key)
VALUES (%(queue)s, %(task)s, %(args)s::json, %(priority)s, %(max_attempts)s, coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now()),
        %(parent_id)s, %(callback_key)s)
ON CONFLICT (callback_key) WHERE callback_key IS NOT NULL DO NOTHING
