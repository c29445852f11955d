UPDATE roadie_workers SET stopped_at = coalesce(:now, (julianday('now') - 2440587.5) * 86400.0) WHERE id = :id
