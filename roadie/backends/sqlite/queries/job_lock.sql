-- A parent about to be judged; SQLite's one writer already holds the write lock.
SELECT * FROM roadie_jobs WHERE id = :id
