-- Pause or resume a queue: workers claim nothing from a paused one.
INSERT INTO roadie_queues (name, paused, changed_at, changed_by)
VALUES (:queue, :paused, coalesce(:now, (julianday('now') - 2440587.5) * 86400.0), :actor)
ON CONFLICT (name) DO UPDATE
SET paused = excluded.paused, changed_at = excluded.changed_at, changed_by = excluded.changed_by
RETURNING *
