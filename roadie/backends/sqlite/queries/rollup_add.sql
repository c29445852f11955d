-- Add the jobs :ids (a JSON array, about to be deleted in the same transaction) to the rollups of
-- the hour from :hour: counts, retries and durations; percentiles stay as the hour began.
INSERT INTO roadie_rollups (queue, task, hour, outcome, jobs, retries, timed, duration_sum)
SELECT queue, task, :hour, state, count(*), sum(max(attempt - 1, 0)), count(started_at),
       coalesce(sum(finished_at - started_at), 0)
FROM roadie_jobs
WHERE id IN (SELECT value FROM json_each(:ids))
GROUP BY queue, task, state
ON CONFLICT (queue, task, hour, outcome) DO UPDATE SET
    jobs = jobs + excluded.jobs,
    retries = retries + excluded.retries,
    timed = timed + excluded.timed,
    duration_sum = duration_sum + excluded.duration_sum
