-- %(jobs)s is a JSON array of job objects; one statement inserts the whole batch in order.
INSERT INTO roadie_jobs
    (queue, task, args, priority, max_attempts, created_at, run_at, scheduled, idempotency_key,
     timeout, parent_id)
SELECT
    job ->> 'queue',
    job ->> 'task',
    (job ->> 'args')::json,
    (job ->> 'priority')::integer,
    (job ->> 'max_attempts')::integer,
    coalesce(%(now)s::timestamptz, now()),
    coalesce((job ->> 'run_at')::timestamptz,
             coalesce(%(now)s::timestamptz, now()) + (job ->> 'delay')::double precision * interval '1 second'),
    (job ->> 'run_at') IS NOT NULL OR (job ->> 'delay')::double precision > 0,  -- see 0008_scheduled
    job ->> 'idempotency_key',
    (job ->> 'timeout')::double precision,
    (job ->> 'parent_id')::bigint
FROM json_array_elements(%(jobs)s::json) WITH ORDINALITY AS batch (job, position)
ORDER BY position
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, idempotency_key, created_at, run_at
