INSERT INTO roadie_workers (id, host, pid, queues, concurrency, started_at, heartbeat_at)
VALUES (:id, :host, :pid, :queues, :concurrency, coalesce(:now, (julianday('now') - 2440587.5) * 86400.0), coalesce(:now, (julianday('now') - 2440587.5) * 86400.0))
ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, stopped_at = NULL
