-- Jobs that completed or failed since %(since)s, per queue (or all as one queue '' when
-- %(by_queue)s is false): how many, how many failed, and nearest-rank percentiles of their last
-- attempt's duration.
WITH finished AS (
    SELECT CASE WHEN %(by_queue)s THEN queue ELSE '' END AS queue, state,
           extract(epoch FROM finished_at - started_at)::float8 AS duration
    FROM roadie_jobs
    WHERE finished_at >= %(since)s::timestamptz AND state IN ('complete', 'failed')
      AND started_at IS NOT NULL AND (%(queue)s::text IS NULL OR queue = %(queue)s)
), ranked AS (
    SELECT queue, state, duration,
           row_number() OVER (PARTITION BY queue ORDER BY duration) AS position,
           count(*) OVER (PARTITION BY queue) AS total
    FROM finished
)
SELECT queue, count(*) AS finished,
       count(*) FILTER (WHERE state = 'failed') AS failed,
       sum(duration) AS duration_sum,
       max(duration) FILTER (WHERE position = (total * 50 + 99) / 100) AS p50,
       max(duration) FILTER (WHERE position = (total * 95 + 99) / 100) AS p95,
       max(duration) FILTER (WHERE position = (total * 99 + 99) / 100) AS p99
FROM ranked
GROUP BY queue
