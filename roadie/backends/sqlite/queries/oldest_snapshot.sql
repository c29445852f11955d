-- SQLite has no long-held snapshot that stops cleanup the way PostgreSQL's do: never any row.
SELECT NULL AS seconds, NULL AS pid, NULL AS application_name, NULL AS state WHERE 0
