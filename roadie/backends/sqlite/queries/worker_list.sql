SELECT * FROM roadie_workers ORDER BY started_at DESC
