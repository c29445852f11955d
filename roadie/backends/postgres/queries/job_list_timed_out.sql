SELECT * FROM roadie_jobs
WHERE state = 'running' AND timeout IS NOT NULL
  AND started_at + timeout * interval '1 second' < coalesce(%(now)s::timestamptz, now())
