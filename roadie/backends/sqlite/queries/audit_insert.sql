-- Record one administrative action: who, when, what, on which jobs, how many.
INSERT INTO roadie_audit (at, actor, action, params, job_ids, count)
VALUES (coalesce(:now, (julianday('now') - 2440587.5) * 86400.0), :actor, :action, :params, :job_ids, :count)
RETURNING *
