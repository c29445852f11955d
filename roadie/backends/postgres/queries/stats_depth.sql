-- Per queue and state: how many jobs, how many await review, every retry so far (attempts
-- after the first, or the one a pending job waits for), and the ages
-- an administrator watches (oldest due pending job, oldest held lock), in seconds.
SELECT queue, state, count(*) AS jobs,
       count(*) FILTER (WHERE needs_review) AS review,
       sum(CASE WHEN state = 'pending' THEN attempt WHEN attempt > 1 THEN attempt - 1 ELSE 0 END)
           AS retries,
       extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - min(run_at) FILTER (WHERE state = 'pending' AND run_at <= coalesce(%(now)s::timestamptz, now())))::float8
           AS oldest_pending_age,
       extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - min(started_at) FILTER (WHERE state = 'running'))::float8
           AS oldest_lock_age
FROM roadie_jobs
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
GROUP BY queue, state
