-- PostgreSQL's twin lets its id column take ids given to it (enqueue_many copies batches in with
-- ids taken beforehand). SQLite's INTEGER PRIMARY KEY always has: nothing to change.
SELECT 1;
