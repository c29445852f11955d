SELECT * FROM roadie_jobs
WHERE state = 'running' AND timeout IS NOT NULL AND started_at + timeout < coalesce(:now, (julianday('now') - 2440587.5) * 86400.0)
