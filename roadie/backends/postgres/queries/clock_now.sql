-- The database's time (or the frozen one), for ages shown to administrators.
SELECT coalesce(%(now)s::timestamptz, clock_timestamp()) AS now
