-- Per queue and outcome: the pruned jobs and their retries, for counters that must not drop.
SELECT queue, outcome, sum(jobs) AS jobs, sum(retries) AS retries
FROM roadie_rollups
WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
GROUP BY queue, outcome
