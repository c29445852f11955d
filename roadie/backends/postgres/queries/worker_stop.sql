UPDATE roadie_workers SET stopped_at = coalesce(%(now)s::timestamptz, now()) WHERE id = %(id)s
