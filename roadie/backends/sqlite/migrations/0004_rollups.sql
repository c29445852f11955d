-- Hourly rollups of pruned history: per queue, task, hour (unix seconds of its start) and outcome
-- (the job's terminal state), how many jobs, their retries, how many had a duration, the sum of
-- those durations and their nearest-rank percentiles (of the hour's jobs when first rolled up).
CREATE TABLE roadie_rollups (
    queue        TEXT    NOT NULL,
    task         TEXT    NOT NULL,
    hour         REAL    NOT NULL,
    outcome      TEXT    NOT NULL,
    jobs         INTEGER NOT NULL DEFAULT 0,
    retries      INTEGER NOT NULL DEFAULT 0,
    timed        INTEGER NOT NULL DEFAULT 0,
    duration_sum REAL    NOT NULL DEFAULT 0,
    p50          REAL,
    p95          REAL,
    p99          REAL,
    PRIMARY KEY (queue, task, hour, outcome)
);
