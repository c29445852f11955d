-- The jobs a parent spawned (its callback jobs are not among them).
SELECT * FROM roadie_jobs WHERE parent_id = %(parent_id)s AND callback_key IS NULL ORDER BY id
