-- Complete a batch of jobs with their results in one statement, each fenced on
-- (id, attempt, locked_by) as in job_complete: a job whose lease was lost is left alone and is
-- missing from what the statement returns. %(ids)s are the jobs' ids; %(batch)s is a jsonb
-- object {"<id>:<attempt>": [result (a JSON text), finished_at (null unless the clock is
-- frozen), held (seconds the job waited in the worker's buffer: its real start is
-- started_at + held)]}. For jobs that spawned no children.
-- Each row looks its entry up by key rather than joining the batch: a join's plan depends on
-- the table's statistics, and with stale ones (a backlog just inserted) the planner scanned the
-- whole batch once per running job, 114 ms for 500 jobs instead of 7.
UPDATE roadie_jobs AS job
SET state = 'complete',
    on_child_complete = NULL,
    on_complete = NULL,
    on_child_failure = NULL,
    locked_by = NULL,
    lock_expires_at = NULL,
    (result, finished_at, started_at, attempts) = (
        SELECT done.result, done.finished_at, done.started_at,
               job.attempts || jsonb_build_array(jsonb_build_object(
                   'attempt', job.attempt, 'worker', job.locked_by, 'started_at', done.started_at,
                   'finished_at', done.finished_at, 'outcome', 'complete'::text,
                   'error', NULL::text, 'traceback', NULL::text))
        FROM (
            SELECT (entry ->> 0)::json AS result,
                   coalesce((entry ->> 1)::timestamptz, %(now)s::timestamptz, now()) AS finished_at,
                   job.started_at + (entry ->> 2)::double precision * interval '1 second' AS started_at
            FROM (SELECT %(batch)s -> (job.id || ':' || job.attempt) AS entry) AS found
        ) AS done
    )
WHERE job.id = ANY(%(ids)s) AND job.state = 'running' AND job.locked_by = %(worker_id)s
  AND %(batch)s ? (job.id || ':' || job.attempt)
RETURNING job.id, job.attempt
