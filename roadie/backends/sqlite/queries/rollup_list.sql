-- The rollups of pruned jobs for the hours from :since up to :until, optionally of one queue and
-- one task, oldest hour first.
SELECT queue, task, hour, outcome, jobs, retries, timed, duration_sum, p50, p95, p99
FROM roadie_rollups
WHERE hour >= :since AND hour < :until
  AND (:queue IS NULL OR queue = :queue) AND (:task IS NULL OR task = :task)
ORDER BY hour, queue, task, outcome
