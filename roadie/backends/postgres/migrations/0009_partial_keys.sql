-- Idempotency and callback keys are unique where a job has one. As full unique indexes they held
-- an entry for every job without one (nearly all): each insert wrote two more index entries, and
-- so did each claim and each completion (an update of the state is never HOT here). Partial
-- indexes hold only the keys. Statements that insert with a key name the index's predicate
-- (ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL), which finds the old full
-- indexes too, so this version runs before and after the migration; an older version's
-- enqueues fail after it. Building them reads the table once, blocking writes meanwhile.
ALTER TABLE roadie_jobs DROP CONSTRAINT roadie_jobs_idempotency_key_key;
CREATE UNIQUE INDEX roadie_jobs_idempotency_key ON roadie_jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
DROP INDEX roadie_jobs_callback_key;
CREATE UNIQUE INDEX roadie_jobs_callback_key ON roadie_jobs (callback_key)
    WHERE callback_key IS NOT NULL;
