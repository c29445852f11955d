-- Add the jobs %(ids)s (locked, about to be deleted in the same transaction) to the rollups of
-- the hour from %(hour)s: counts, retries and durations; percentiles stay as the hour began.
INSERT INTO roadie_rollups AS r (queue, task, hour, outcome, jobs, retries, timed, duration_sum)
SELECT queue, task, %(hour)s::timestamptz, state, count(*), sum(greatest(attempt - 1, 0)),
       count(started_at),
       coalesce(sum(extract(epoch FROM finished_at - started_at)::float8), 0)
FROM roadie_jobs
WHERE id = ANY(%(ids)s)
GROUP BY queue, task, state
ON CONFLICT (queue, task, hour, outcome) DO UPDATE SET
    jobs = r.jobs + excluded.jobs,
    retries = r.retries + excluded.retries,
    timed = r.timed + excluded.timed,
    duration_sum = r.duration_sum + excluded.duration_sum
