-- The database's time (or the frozen one), for ages shown to administrators.
SELECT coalesce(:now, (julianday('now') - 2440587.5) * 86400.0) AS now
