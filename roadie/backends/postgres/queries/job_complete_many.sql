-- Complete a batch of jobs with their results in one statement, each fenced on
-- (id, attempt, locked_by) as in job_complete: a job whose lease was lost is left alone and is
-- missing from what the statement returns. %(batch)s is a JSON array of
-- [id, attempt, result (a JSON text), finished_at (null unless the clock is frozen), held
-- (seconds the job waited in the worker's buffer: its real start is started_at + held)].
-- For jobs that spawned no children.
UPDATE roadie_jobs AS job
SET state = 'complete',
    result = done.result::json,
    finished_at = done.finished_at,
    on_child_complete = NULL,
    on_complete = NULL,
    on_child_failure = NULL,
    started_at = job.started_at + done.held * interval '1 second',
    locked_by = NULL,
    lock_expires_at = NULL,
    attempts = job.attempts || jsonb_build_array(jsonb_build_object(
        'attempt', job.attempt, 'worker', job.locked_by, 'started_at', job.started_at + done.held * interval '1 second',
        'finished_at', done.finished_at, 'outcome', 'complete'::text, 'error', NULL::text, 'traceback', NULL::text))
FROM (
    SELECT (item ->> 0)::bigint AS id,
           (item ->> 1)::integer AS attempt,
           item ->> 2 AS result,
           (item ->> 4)::double precision AS held,
           coalesce((item ->> 3)::timestamptz, %(now)s::timestamptz, now()) AS finished_at
    FROM json_array_elements(%(batch)s::json) AS item
) AS done
WHERE job.id = done.id AND job.state = 'running'
  AND job.attempt = done.attempt AND job.locked_by = %(worker_id)s
RETURNING job.id, job.attempt
