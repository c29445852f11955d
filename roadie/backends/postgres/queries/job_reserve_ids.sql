-- Ids from the jobs' sequence, in order, and the database's time, for a batch job_insert_bulk
-- is about to copy in. The sequence is looked up once (OFFSET 0 keeps the subquery apart):
-- as nextval's argument in the select list the lookup ran per row, 4 of every 5 µs an id took.
SELECT nextval(identity.sequence) AS id,
       coalesce(%(now)s::timestamptz, now()) AS now
FROM (SELECT pg_get_serial_sequence('roadie_jobs', 'id')::regclass AS sequence OFFSET 0) AS identity,
     generate_series(1, %(count)s)
