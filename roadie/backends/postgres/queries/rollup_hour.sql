-- Start the rollups of the hour from %(hour)s: per queue, task and outcome, the nearest-rank
-- percentiles of the durations of the jobs the pruner may delete. Counts start at 0 (each batch
-- of deletes adds its own); an hour already started is left as it is.
WITH prunable AS (
    SELECT queue, task, state AS outcome,
           CASE WHEN started_at IS NOT NULL
                THEN extract(epoch FROM finished_at - started_at)::float8 END AS duration
    FROM roadie_jobs
    WHERE finished_at >= %(hour)s::timestamptz
      AND finished_at < %(hour)s::timestamptz + interval '1 hour'
      AND state IN ('complete', 'failed', 'cancelled') AND NOT needs_review
), ranked AS (
    SELECT queue, task, outcome, duration,
           row_number() OVER (PARTITION BY queue, task, outcome ORDER BY duration) AS position,
           count(*) OVER (PARTITION BY queue, task, outcome) AS total
    FROM prunable
    WHERE duration IS NOT NULL
)
INSERT INTO roadie_rollups (queue, task, hour, outcome, p50, p95, p99)
SELECT groups.queue, groups.task, %(hour)s::timestamptz, groups.outcome,
       max(ranked.duration) FILTER (WHERE ranked.position = (ranked.total * 50 + 99) / 100),
       max(ranked.duration) FILTER (WHERE ranked.position = (ranked.total * 95 + 99) / 100),
       max(ranked.duration) FILTER (WHERE ranked.position = (ranked.total * 99 + 99) / 100)
FROM (SELECT DISTINCT queue, task, outcome FROM prunable) AS groups
LEFT JOIN ranked USING (queue, task, outcome)
GROUP BY groups.queue, groups.task, groups.outcome
ON CONFLICT (queue, task, hour, outcome) DO NOTHING
