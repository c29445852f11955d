SELECT * FROM roadie_jobs WHERE id = :id
