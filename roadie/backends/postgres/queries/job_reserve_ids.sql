-- Ids from the jobs' sequence, in order, and the database's time, for a batch job_insert_bulk
-- is about to copy in.
SELECT nextval(pg_get_serial_sequence('roadie_jobs', 'id')) AS id,
       coalesce(%(now)s::timestamptz, now()) AS now
FROM generate_series(1, %(count)s)
