-- Jobs by id (%(ids)s, an array), in id order: the ended jobs of a batched completion.
SELECT * FROM roadie_jobs WHERE id = ANY(%(ids)s) ORDER BY id
