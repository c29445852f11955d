-- Jobs, one row each, with their attempt records kept on the row (JSON), and the workers.
-- Arguments, results and progress are `json` (kept as the exact text written); attempts `jsonb`.
CREATE TABLE roadie_jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue           text        NOT NULL,
    task            text        NOT NULL,
    args            json        NOT NULL,
    priority        integer     NOT NULL DEFAULT 0,
    state           text        NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'running', 'waiting', 'complete', 'failed', 'cancelled')),
    attempt         integer     NOT NULL DEFAULT 0,
    max_attempts    integer     NOT NULL,
    lost_count      integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL,
    run_at          timestamptz NOT NULL,
    started_at      timestamptz,
    finished_at     timestamptz,
    result          json,
    error           text,
    failure         text,
    needs_review    boolean     NOT NULL DEFAULT false,
    progress        json,
    parent_id       bigint,
    locked_by       text,
    lock_expires_at timestamptz,
    idempotency_key text        UNIQUE,
    timeout         double precision,
    attempts        jsonb       NOT NULL DEFAULT '[]'
);

-- The hot paths stay on small partial indexes however much finished history piles up.
CREATE INDEX roadie_jobs_pending ON roadie_jobs (queue, priority DESC, id) WHERE state = 'pending';
CREATE INDEX roadie_jobs_running ON roadie_jobs (lock_expires_at) WHERE state = 'running';
CREATE INDEX roadie_jobs_parent ON roadie_jobs (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE roadie_workers (
    id           text        PRIMARY KEY,
    host         text        NOT NULL,
    pid          integer     NOT NULL,
    queues       json        NOT NULL,
    concurrency  integer     NOT NULL,
    started_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    stopped_at   timestamptz
);

-- Wake idle workers at once when due jobs arrive: one NOTIFY per queue per inserting statement.
CREATE FUNCTION roadie_notify_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('roadie_jobs', queue)
    FROM (SELECT DISTINCT queue FROM inserted WHERE state = 'pending' AND run_at <= now()) AS due;
    RETURN NULL;
END
$$;

CREATE TRIGGER roadie_jobs_notify AFTER INSERT ON roadie_jobs
REFERENCING NEW TABLE AS inserted
FOR EACH STATEMENT EXECUTE FUNCTION roadie_notify_inserted();
