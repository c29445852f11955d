-- Per queue and time bucket of the window [%(since)s, %(until)s]: jobs created, and jobs that
-- completed or failed (started ones, as stats_finished counts them) and how many of those failed.
-- Bucket i covers [since + i * width, since + (i + 1) * width); the last one also holds until.
-- Jobs created are found among those pending, running or ended in the window (each read through
-- its index), so one created in the window that now waits on its children is not counted.
WITH events AS (
    SELECT queue, created_at AS at, 1 AS created, 0 AS finished, 0 AS failed
    FROM roadie_jobs
    WHERE state = 'pending' AND created_at >= %(since)s::timestamptz
      AND created_at <= %(until)s::timestamptz AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    UNION ALL
    SELECT queue, created_at, 1, 0, 0
    FROM roadie_jobs
    WHERE state = 'running' AND created_at >= %(since)s::timestamptz
      AND created_at <= %(until)s::timestamptz AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    UNION ALL
    SELECT queue, created_at, 1, 0, 0
    FROM roadie_jobs
    WHERE finished_at >= %(since)s::timestamptz AND created_at >= %(since)s::timestamptz
      AND created_at <= %(until)s::timestamptz AND (%(queue)s::text IS NULL OR queue = %(queue)s)
    UNION ALL
    SELECT queue, finished_at, 0, 1, CASE WHEN state = 'failed' THEN 1 ELSE 0 END
    FROM roadie_jobs
    WHERE finished_at >= %(since)s::timestamptz AND finished_at <= %(until)s::timestamptz
      AND state IN ('complete', 'failed') AND started_at IS NOT NULL
      AND (%(queue)s::text IS NULL OR queue = %(queue)s)
)
SELECT queue,
       least(floor(extract(epoch FROM at - %(since)s::timestamptz) / %(width)s::float8)::int,
             %(buckets)s::int - 1) AS bucket,
       sum(created)::int AS created, sum(finished)::int AS finished, sum(failed)::int AS failed
FROM events
GROUP BY 1, 2
