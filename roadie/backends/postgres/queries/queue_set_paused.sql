-- Pause or resume a queue: workers claim nothing from a paused one.
INSERT INTO roadie_queues (name, paused, changed_at, changed_by)
VALUES (%(queue)s, %(paused)s, coalesce(%(now)s::timestamptz, now()), %(actor)s)
ON CONFLICT (name) DO UPDATE
SET paused = excluded.paused, changed_at = excluded.changed_at, changed_by = excluded.changed_by
RETURNING *
