-- Record one administrative action: who, when, what, on which jobs, how many.
INSERT INTO roadie_audit (at, actor, action, params, job_ids, count)
VALUES (coalesce(%(now)s::timestamptz, now()), %(actor)s, %(action)s, %(params)s::jsonb, %(job_ids)s::jsonb, %(count)s)
RETURNING *
