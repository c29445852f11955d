-- The rollups the hour from :hour starts with: per queue, task and outcome of the jobs the
-- pruner may delete, the nearest-rank percentiles of their durations (of the hour's first
-- 20,000 jobs: a busy hour's are a sample's, read in well under a second). Read outside the
-- write lock; `rollup_start` stores them.
WITH prunable AS (
    SELECT queue, task, state AS outcome,
           CASE WHEN started_at IS NOT NULL THEN finished_at - started_at END AS duration
    FROM roadie_jobs
    WHERE finished_at >= :hour AND finished_at < :hour + 3600.0
      AND state IN ('complete', 'failed', 'cancelled') AND needs_review = 0
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
       max(CASE WHEN ranked.position = (ranked.total * 50 + 99) / 100 THEN ranked.duration END) AS p50,
       max(CASE WHEN ranked.position = (ranked.total * 95 + 99) / 100 THEN ranked.duration END) AS p95,
       max(CASE WHEN ranked.position = (ranked.total * 99 + 99) / 100 THEN ranked.duration END) AS p99
FROM (SELECT DISTINCT queue, task, outcome FROM prunable) AS groups
LEFT JOIN ranked USING (queue, task, outcome)
GROUP BY groups.queue, groups.task, groups.outcome
