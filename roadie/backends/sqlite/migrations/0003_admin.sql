-- Administration: paused queues, the audit log, review notes and replaced arguments on jobs,
-- and an index for history by finish time (stats windows, purge).
CREATE TABLE roadie_queues (
    name       TEXT    PRIMARY KEY,
    paused     INTEGER NOT NULL DEFAULT 0,
    changed_at REAL    NOT NULL,
    changed_by TEXT
);

CREATE TABLE roadie_audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      REAL    NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    params  TEXT    NOT NULL DEFAULT '{}',
    job_ids TEXT    NOT NULL DEFAULT '[]',
    count   INTEGER NOT NULL
);

ALTER TABLE roadie_jobs ADD COLUMN review_note TEXT;
ALTER TABLE roadie_jobs ADD COLUMN reviewed_at REAL;
ALTER TABLE roadie_jobs ADD COLUMN args_history TEXT NOT NULL DEFAULT '[]';
CREATE INDEX roadie_jobs_finished ON roadie_jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX roadie_jobs_review ON roadie_jobs (id) WHERE needs_review = 1;
