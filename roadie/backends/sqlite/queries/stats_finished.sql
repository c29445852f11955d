-- Jobs that completed or failed since :since, per queue (or all as one queue '' when :by_queue
-- is 0): how many, how many failed, and nearest-rank percentiles of their last attempt's duration.
WITH finished AS (
    SELECT CASE WHEN :by_queue THEN queue ELSE '' END AS queue, state,
           finished_at - started_at AS duration
    FROM roadie_jobs
    WHERE finished_at >= :since AND state IN ('complete', 'failed') AND started_at IS NOT NULL
      AND (:queue IS NULL OR queue = :queue)
), ranked AS (
    SELECT queue, state, duration,
           row_number() OVER (PARTITION BY queue ORDER BY duration) AS position,
           count(*) OVER (PARTITION BY queue) AS total
    FROM finished
)
SELECT queue, count(*) AS finished,
       sum(CASE WHEN state = 'failed' THEN 1 ELSE 0 END) AS failed,
       sum(duration) AS duration_sum,
       max(CASE WHEN position = (total * 50 + 99) / 100 THEN duration END) AS p50,
       max(CASE WHEN position = (total * 95 + 99) / 100 THEN duration END) AS p95,
       max(CASE WHEN position = (total * 99 + 99) / 100 THEN duration END) AS p99
FROM ranked
GROUP BY queue
