-- :jobs is a JSON array of job objects; one statement inserts the whole batch in order.
INSERT INTO roadie_jobs
    (queue, task, args, priority, max_attempts, created_at, run_at, scheduled, idempotency_key,
     timeout, parent_id)
SELECT
    value ->> 'queue',
    value ->> 'task',
    value ->> 'args',
    value ->> 'priority',
    value ->> 'max_attempts',
    coalesce(:now, (julianday('now') - 2440587.5) * 86400.0),
    coalesce(value ->> 'run_at', coalesce(:now, (julianday('now') - 2440587.5) * 86400.0) + (value ->> 'delay')),
    value ->> 'run_at' IS NOT NULL OR (value ->> 'delay') > 0,  -- see 0008_scheduled
    value ->> 'idempotency_key',
    value ->> 'timeout',
    value ->> 'parent_id'
FROM json_each(:jobs)
WHERE true
ORDER BY key
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, idempotency_key, created_at, run_at
