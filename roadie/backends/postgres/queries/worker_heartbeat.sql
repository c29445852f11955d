INSERT INTO roadie_workers (id, host, pid, queues, concurrency, started_at, heartbeat_at)
VALUES (%(id)s, %(host)s, %(pid)s, %(queues)s::json, %(concurrency)s, coalesce(%(now)s::timestamptz, now()), coalesce(%(now)s::timestamptz, now()))
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, stopped_at = NULL
