-- Hourly rollups of pruned history: per queue, task, hour (its start) and outcome (the job's
-- terminal state), how many jobs, their retries, how many had a duration, the sum of those
-- durations and their nearest-rank percentiles (of the hour's jobs when first rolled up).
CREATE TABLE roadie_rollups (
    queue        text        NOT NULL,
    task         text        NOT NULL,
    hour         timestamptz NOT NULL,
    outcome      text        NOT NULL,
    jobs         bigint      NOT NULL DEFAULT 0,
    retries      bigint      NOT NULL DEFAULT 0,
    timed        bigint      NOT NULL DEFAULT 0,
    duration_sum float8      NOT NULL DEFAULT 0,
    p50          float8,
    p95          float8,
    p99          float8,
    PRIMARY KEY (queue, task, hour, outcome)
);
