-- Delete the jobs :ids (a JSON array) the pruner rolled up in this transaction.
DELETE FROM roadie_jobs WHERE id IN (SELECT value FROM json_each(:ids))
