-- A batch without idempotency keys (enqueue_many) in one statement: {rows} stands for one
-- "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" per job (SQLiteBackend._insert_bulk). Rows get their ids in
-- input order; created_at and run_at come from this process's clock, which is SQLite's.
INSERT INTO roadie_jobs
    (queue, task, args, priority, max_attempts, created_at, run_at, scheduled, timeout, parent_id)
VALUES {rows}
RETURNING id
