-- Complete a batch of jobs with their results in one statement, each fenced on
-- (id, attempt, locked_by) as in job_complete: a job whose lease was lost is left alone and is
-- missing from what the statement returns. :batch is a JSON array of
-- [id, attempt, result (a JSON text), finished_at (null unless the clock is frozen), held
-- (seconds the job waited in the worker's buffer: its real start is started_at + held)].
-- For jobs that spawned no children.
UPDATE roadie_jobs
SET state = 'complete',
    result = done.result,
    finished_at = done.finished_at,
    on_child_complete = NULL,
    on_complete = NULL,
    on_child_failure = NULL,
    started_at = roadie_jobs.started_at + done.held,
    locked_by = NULL,
    lock_expires_at = NULL,
    attempts = json_insert(roadie_jobs.attempts, '$[#]', json_object(
        'attempt', roadie_jobs.attempt, 'worker', roadie_jobs.locked_by,
        'started_at', strftime('%Y-%m-%dT%H:%M:%fZ', roadie_jobs.started_at + done.held, 'unixepoch'),
        'finished_at', strftime('%Y-%m-%dT%H:%M:%fZ', done.finished_at, 'unixepoch'),
        'outcome', 'complete', 'error', NULL, 'traceback', NULL))
FROM (
    SELECT json_extract(value, '$[0]') AS id,
           json_extract(value, '$[1]') AS attempt,
           json_extract(value, '$[2]') AS result,
           json_extract(value, '$[4]') AS held,
           coalesce(json_extract(value, '$[3]'), :now,
                    (julianday('now') - 2440587.5) * 86400.0) AS finished_at
    FROM json_each(:batch)
) AS done
WHERE roadie_jobs.id = done.id AND roadie_jobs.state = 'running'
  AND roadie_jobs.attempt = done.attempt AND roadie_jobs.locked_by = :worker_id
RETURNING roadie_jobs.id, roadie_jobs.attempt
