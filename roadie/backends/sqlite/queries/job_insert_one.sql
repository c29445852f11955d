-- One job (enqueue), as bound values: job_insert's JSON batch costs a parse and a sort that a
-- single row doesn't need.
INSERT INTO roadie_jobs
    (queue, task, args, priority, max_attempts, created_at, run_at, scheduled, idempotency_key,
     timeout, parent_id)
VALUES (
    :queue,
    :task,
    :args,
    :priority,
    :max_attempts,
    coalesce(:now, (julianday('now') - 2440587.5) * 86400.0),
    coalesce(:run_at, coalesce(:now, (julianday('now') - 2440587.5) * 86400.0) + :delay),
    :run_at IS NOT NULL OR :delay > 0,  -- see 0008_scheduled
    :idempotency_key,
    :timeout,
    :parent_id
)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, idempotency_key, created_at, run_at
