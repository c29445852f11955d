-- The transaction on this database (of any client) that has held a snapshot longest: while it
-- stays open, PostgreSQL cannot remove dead job rows, and claims slow down (FAULTS F18).
SELECT extract(epoch FROM now() - coalesce(xact_start, query_start))::float8 AS seconds,
       pid, application_name, state
FROM pg_stat_activity
WHERE datname = current_database() AND backend_xmin IS NOT NULL AND pid <> pg_backend_pid()
ORDER BY coalesce(xact_start, query_start)
LIMIT 1
