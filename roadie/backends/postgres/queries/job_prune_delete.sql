-- Delete the jobs %(ids)s the pruner rolled up (and locked) in this transaction.
DELETE FROM roadie_jobs WHERE id = ANY(%(ids)s)
