SELECT * FROM roadie_jobs WHERE callback_key = :key
