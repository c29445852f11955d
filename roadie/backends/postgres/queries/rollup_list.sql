-- The rollups of pruned jobs for the hours from %(since)s up to %(until)s, optionally of one
-- queue and one task, oldest hour first.
SELECT queue, task, hour, outcome, jobs, retries, timed, duration_sum, p50, p95, p99
FROM roadie_rollups
WHERE hour >= %(since)s::timestamptz AND hour < %(until)s::timestamptz
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
ORDER BY hour, queue, task, outcome
