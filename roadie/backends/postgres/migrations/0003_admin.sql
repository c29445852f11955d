-- Administration: paused queues, the audit log, review notes and replaced arguments on jobs,
-- and an index for history by finish time (stats windows, purge).
CREATE TABLE roadie_queues (
    name       text        PRIMARY KEY,
    paused     boolean     NOT NULL DEFAULT false,
    changed_at timestamptz NOT NULL,
    changed_by text
);

CREATE TABLE roadie_audit (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL,
    actor   text        NOT NULL,
    action  text        NOT NULL,
    params  jsonb       NOT NULL DEFAULT '{}',
    job_ids jsonb       NOT NULL DEFAULT '[]',
    count   integer     NOT NULL
);

ALTER TABLE roadie_jobs ADD COLUMN review_note text;
ALTER TABLE roadie_jobs ADD COLUMN reviewed_at timestamptz;
ALTER TABLE roadie_jobs ADD COLUMN args_history jsonb NOT NULL DEFAULT '[]';
CREATE INDEX roadie_jobs_finished ON roadie_jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX roadie_jobs_review ON roadie_jobs (id) WHERE needs_review;

-- A resumed queue wakes idle workers at once, as new jobs do.
CREATE FUNCTION roadie_notify_resumed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('roadie_jobs', NEW.name);
    RETURN NULL;
END
$$;

CREATE TRIGGER roadie_queues_notify AFTER INSERT OR UPDATE ON roadie_queues
FOR EACH ROW WHEN (NOT NEW.paused) EXECUTE FUNCTION roadie_notify_resumed();
