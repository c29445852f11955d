-- Start the rollups of the hour from %(hour)s with %(groups)s (a JSON array of {queue, task,
-- outcome, p50, p95, p99}); counts start at 0, each batch of deletes adds its own. An hour
-- already started (by a run that stopped, or another pruner) is left as it is.
INSERT INTO roadie_rollups (queue, task, hour, outcome, p50, p95, p99)
SELECT g.queue, g.task, %(hour)s::timestamptz, g.outcome, g.p50, g.p95, g.p99
FROM jsonb_to_recordset(%(groups)s::jsonb)
     AS g(queue text, task text, outcome text, p50 float8, p95 float8, p99 float8)
ON CONFLICT (queue, task, hour, outcome) DO NOTHING
