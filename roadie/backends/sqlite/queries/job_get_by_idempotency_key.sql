SELECT * FROM roadie_jobs WHERE idempotency_key = :key
