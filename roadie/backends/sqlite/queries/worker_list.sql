-- Registered workers, newest first, with how many jobs each holds now.
SELECT worker.*,
       (SELECT count(*) FROM roadie_jobs AS job
        WHERE job.state = 'running' AND job.locked_by = worker.id) AS jobs
FROM roadie_workers AS worker
ORDER BY worker.started_at DESC
