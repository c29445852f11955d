-- Per queue and time bucket of the window [:since, :until]: jobs created, and jobs that completed
-- or failed (started ones, as stats_finished counts them) and how many of those failed. Bucket i
-- covers [:since + i * :width, :since + (i + 1) * :width); the last one also holds :until.
-- Jobs created are found among those pending, running or ended in the window (each read through
-- its index), so one created in the window that now waits on its children is not counted.
WITH events AS (
    SELECT queue, created_at AS at, 1 AS created, 0 AS finished, 0 AS failed
    FROM roadie_jobs
    WHERE state = 'pending' AND created_at >= :since AND created_at <= :until
      AND (:queue IS NULL OR queue = :queue)
    UNION ALL
    SELECT queue, created_at, 1, 0, 0
    FROM roadie_jobs
    WHERE state = 'running' AND created_at >= :since AND created_at <= :until
      AND (:queue IS NULL OR queue = :queue)
    UNION ALL
    SELECT queue, created_at, 1, 0, 0
    FROM roadie_jobs
    WHERE finished_at >= :since AND created_at >= :since AND created_at <= :until
      AND (:queue IS NULL OR queue = :queue)
    UNION ALL
    SELECT queue, finished_at, 0, 1, CASE WHEN state = 'failed' THEN 1 ELSE 0 END
    FROM roadie_jobs
    WHERE finished_at >= :since AND finished_at <= :until AND state IN ('complete', 'failed')
      AND started_at IS NOT NULL AND (:queue IS NULL OR queue = :queue)
)
SELECT queue, min(CAST((at - :since) / :width AS INTEGER), :buckets - 1) AS bucket,
       sum(created) AS created, sum(finished) AS finished, sum(failed) AS failed
FROM events
GROUP BY queue, bucket
