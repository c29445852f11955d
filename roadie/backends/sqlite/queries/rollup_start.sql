-- Start the rollups of the hour from :hour with :groups (a JSON array of {queue, task, outcome,
-- p50, p95, p99}); counts start at 0, each batch of deletes adds its own. An hour already started
-- (by a run that stopped, or another pruner) is left as it is.
INSERT INTO roadie_rollups (queue, task, hour, outcome, p50, p95, p99)
SELECT json_extract(value, '$.queue'), json_extract(value, '$.task'), :hour,
       json_extract(value, '$.outcome'), json_extract(value, '$.p50'),
       json_extract(value, '$.p95'), json_extract(value, '$.p99')
FROM json_each(:groups)
WHERE true
ON CONFLICT (queue, task, hour, outcome) DO NOTHING
