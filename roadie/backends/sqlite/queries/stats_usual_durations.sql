-- For each task with a running job: how long its jobs that completed since :since took
-- (nearest-rank p95 over the latest 10,000 at most, and how many), so a job far past it can
-- be shown as stuck.
WITH finished AS (
    SELECT task, finished_at - started_at AS duration
    FROM roadie_jobs
    WHERE finished_at >= :since AND state = 'complete' AND started_at IS NOT NULL
      AND task IN (SELECT task FROM roadie_jobs WHERE state = 'running')
    ORDER BY finished_at DESC
    LIMIT 10000
), ranked AS (
    SELECT task, duration,
           row_number() OVER (PARTITION BY task ORDER BY duration) AS position,
           count(*) OVER (PARTITION BY task) AS total
    FROM finished
)
SELECT task, count(*) AS samples,
       max(CASE WHEN position = (total * 95 + 99) / 100 THEN duration END) AS p95
FROM ranked
GROUP BY task
