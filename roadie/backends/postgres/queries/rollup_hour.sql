-- The rollups the hour from %(hour)s starts with: per queue, task and outcome of the jobs the
-- pruner may delete, the nearest-rank percentiles of their durations (of the hour's first
-- 20,000 jobs: a busy hour's are a sample's, read in well under a second). Read outside the
-- write lock; `rollup_start` stores them.
WITH prunable AS (
    SELECT queue, task, state AS outcome,
           CASE WHEN started_at IS NOT NULL
                THEN extract(epoch FROM finished_at - started_at)::float8 END AS duration
    FROM roadie_jobs
    WHERE finished_at >= %(hour)s::timestamptz
      AND finished_at < %(hour)s::timestamptz + interval '1 hour'
      AND state IN ('complete', 'failed', 'cancelled') AND NOT needs_review
    ORDER BY finished_at
    LIMIT 20000
), ranked AS (
    SELECT queue, task, outcome, duration,
           row_number() OVER (PARTITION BY queue, task, outcome ORDER BY duration) AS position,
           count(*) OVER (PARTITION BY queue, task, outcome) AS total
    FROM prunable
    WHERE duration IS NOT NULL
)
SELECT groups.queue, groups.task, groups.outcome,
       max(ranked.duration) FILTER (WHERE ranked.position = (ranked.total * 50 + 99) / 100) AS p50,
       max(ranked.duration) FILTER (WHERE ranked.position = (ranked.total * 95 + 99) / 100) AS p95,
       max(ranked.duration) FILTER (WHERE ranked.position = (ranked.total * 99 + 99) / 100) AS p99
FROM (SELECT DISTINCT queue, task, outcome FROM prunable) AS groups
LEFT JOIN ranked USING (queue, task, outcome)
GROUP BY groups.queue, groups.task, groups.outcome
