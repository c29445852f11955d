-- Idempotency and callback keys are unique where a job has one. As full unique indexes they held
-- an entry for every job without one (nearly all): each insert wrote two more index entries, an
-- eighth of a bulk insert's time. Partial indexes hold only the keys. Statements that insert with
-- a key name the index's predicate (ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT
-- NULL), which finds the old full indexes too, so this version runs before and after the
-- migration; an older version's enqueues fail after it.
--
-- The key's index came from a UNIQUE in the column's definition, which SQLite cannot drop: the
-- table is rebuilt (SQLite's documented way: new table, copy, drop, rename, indexes again),
-- reading and writing every row once, writes blocked meanwhile. The AUTOINCREMENT counter is
-- carried over, so the ids of deleted jobs are still never given out again.
CREATE TABLE roadie_jobs_0009 (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    queue             TEXT    NOT NULL,
    task              TEXT    NOT NULL,
    args              TEXT    NOT NULL,
    priority          INTEGER NOT NULL DEFAULT 0,
    state             TEXT    NOT NULL DEFAULT 'pending'
                      CHECK (state IN ('pending', 'running', 'waiting', 'complete', 'failed', 'cancelled')),
    attempt           INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    lost_count        INTEGER NOT NULL DEFAULT 0,
    created_at        REAL    NOT NULL,
    run_at            REAL    NOT NULL,
    started_at        REAL,
    finished_at       REAL,
    result            TEXT,
    error             TEXT,
    failure           TEXT,
    needs_review      INTEGER NOT NULL DEFAULT 0,
    progress          TEXT,
    parent_id         INTEGER,
    locked_by         TEXT,
    lock_expires_at   REAL,
    idempotency_key   TEXT,
    timeout           REAL,
    attempts          TEXT    NOT NULL DEFAULT '[]',
    callback_key      TEXT,
    on_child_complete TEXT,
    on_complete       TEXT,
    on_child_failure  TEXT,
    review_note       TEXT,
    reviewed_at       REAL,
    args_history      TEXT    NOT NULL DEFAULT '[]',
    scheduled         INTEGER NOT NULL DEFAULT 0
);
INSERT INTO roadie_jobs_0009
    (id, queue, task, args, priority, state, attempt, max_attempts, lost_count, created_at,
     run_at, started_at, finished_at, result, error, failure, needs_review, progress, parent_id,
     locked_by, lock_expires_at, idempotency_key, timeout, attempts, callback_key,
     on_child_complete, on_complete, on_child_failure, review_note, reviewed_at, args_history,
     scheduled)
SELECT
     id, queue, task, args, priority, state, attempt, max_attempts, lost_count, created_at,
     run_at, started_at, finished_at, result, error, failure, needs_review, progress, parent_id,
     locked_by, lock_expires_at, idempotency_key, timeout, attempts, callback_key,
     on_child_complete, on_complete, on_child_failure, review_note, reviewed_at, args_history,
     scheduled
FROM roadie_jobs
ORDER BY id;
DELETE FROM sqlite_sequence WHERE name = 'roadie_jobs_0009';
INSERT INTO sqlite_sequence (name, seq)
SELECT 'roadie_jobs_0009', seq FROM sqlite_sequence WHERE name = 'roadie_jobs';
DROP TABLE roadie_jobs;
ALTER TABLE roadie_jobs_0009 RENAME TO roadie_jobs;
CREATE UNIQUE INDEX roadie_jobs_idempotency_key ON roadie_jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX roadie_jobs_callback_key ON roadie_jobs (callback_key)
    WHERE callback_key IS NOT NULL;
-- The others as the earlier migrations left them.
CREATE INDEX roadie_jobs_pending ON roadie_jobs (queue, priority DESC, id)
    WHERE state = 'pending' AND scheduled = 0;
CREATE INDEX roadie_jobs_scheduled ON roadie_jobs (run_at) WHERE state = 'pending' AND scheduled = 1;
CREATE INDEX roadie_jobs_pending_suspects ON roadie_jobs (queue, priority DESC, id)
    WHERE state = 'pending' AND lost_count > 0;
CREATE INDEX roadie_jobs_running ON roadie_jobs (lock_expires_at) WHERE state = 'running';
CREATE INDEX roadie_jobs_parent ON roadie_jobs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX roadie_jobs_open_children ON roadie_jobs (parent_id)
    WHERE parent_id IS NOT NULL AND state IN ('pending', 'running', 'waiting');
CREATE INDEX roadie_jobs_finished ON roadie_jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX roadie_jobs_review ON roadie_jobs (id) WHERE needs_review = 1;
