-- One job (enqueue), as bound values: job_insert's JSON batch costs the server a parse, a set
-- function and a sort that a single row doesn't need.
INSERT INTO roadie_jobs
    (queue, task, args, priority, max_attempts, created_at, run_at, scheduled, idempotency_key,
     timeout, parent_id)
VALUES (
    %(queue)s,
    %(task)s,
    %(args)s::json,
    %(priority)s,
    %(max_attempts)s,
    coalesce(%(now)s::timestamptz, now()),
    coalesce(%(run_at)s::timestamptz,
             coalesce(%(now)s::timestamptz, now()) + %(delay)s::double precision * interval '1 second'),
    %(run_at)s::timestamptz IS NOT NULL OR %(delay)s::double precision > 0,  -- see 0008_scheduled
    %(idempotency_key)s,
    %(timeout)s::double precision,
    %(parent_id)s::bigint
)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, idempotency_key, created_at, run_at
