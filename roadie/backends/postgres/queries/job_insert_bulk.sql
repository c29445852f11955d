-- A batch without idempotency keys (enqueue_many) in one binary COPY, the fastest way in: COPY
-- returns no rows, so the batch takes its ids and its created_at from job_reserve_ids first.
COPY roadie_jobs
    (id, queue, task, args, priority, max_attempts, created_at, run_at, scheduled, timeout, parent_id)
FROM STDIN (FORMAT BINARY)
