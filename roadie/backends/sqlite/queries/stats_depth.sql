-- Per queue and state: how many jobs, how many await review, every retry so far (attempts
-- after the first, or the one a pending job waits for), and the ages
-- an administrator watches (oldest due pending job, oldest held lock), in seconds.
SELECT queue, state, count(*) AS jobs,
       sum(CASE WHEN needs_review = 1 THEN 1 ELSE 0 END) AS review,
       sum(CASE WHEN state = 'pending' THEN attempt WHEN attempt > 1 THEN attempt - 1 ELSE 0 END)
           AS retries,
       max(CASE WHEN state = 'pending' AND run_at <= coalesce(:now, (julianday('now') - 2440587.5) * 86400.0) THEN coalesce(:now, (julianday('now') - 2440587.5) * 86400.0) - run_at END)
           AS oldest_pending_age,
       max(CASE WHEN state = 'running' THEN coalesce(:now, (julianday('now') - 2440587.5) * 86400.0) - started_at END) AS oldest_lock_age
FROM roadie_jobs
WHERE (:queue IS NULL OR queue = :queue)
GROUP BY queue, state
