-- Jobs, one row each, with their attempt records kept on the row (JSON), and the workers.
-- Times are unix seconds (REAL) from the database's clock.
CREATE TABLE roadie_jobs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    queue           TEXT    NOT NULL,
    task            TEXT    NOT NULL,
    args            TEXT    NOT NULL,
    priority        INTEGER NOT NULL DEFAULT 0,
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'running', 'waiting', 'complete', 'failed', 'cancelled')),
    attempt         INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    lost_count      INTEGER NOT NULL DEFAULT 0,
    created_at      REAL    NOT NULL,
    run_at          REAL    NOT NULL,
    started_at      REAL,
    finished_at     REAL,
    result          TEXT,
    error           TEXT,
    failure         TEXT,
    needs_review    INTEGER NOT NULL DEFAULT 0,
    progress        TEXT,
    parent_id       INTEGER,
    locked_by       TEXT,
    lock_expires_at REAL,
    idempotency_key TEXT    UNIQUE,
    timeout         REAL,
    attempts        TEXT    NOT NULL DEFAULT '[]'
);

-- The hot paths stay on small partial indexes however much finished history piles up.
CREATE INDEX roadie_jobs_pending ON roadie_jobs (queue, priority DESC, id) WHERE state = 'pending';
CREATE INDEX roadie_jobs_running ON roadie_jobs (lock_expires_at) WHERE state = 'running';
CREATE INDEX roadie_jobs_parent ON roadie_jobs (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE roadie_workers (
    id           TEXT    PRIMARY KEY,
    host         TEXT    NOT NULL,
    pid          INTEGER NOT NULL,
    queues       TEXT    NOT NULL,
    concurrency  INTEGER NOT NULL,
    started_at   REAL    NOT NULL,
    heartbeat_at REAL    NOT NULL,
    stopped_at   REAL
);
