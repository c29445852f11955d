-- Jobs by id (:ids, a JSON array), in id order: the ended jobs of a batched completion.
SELECT * FROM roadie_jobs WHERE id IN (SELECT value FROM json_each(:ids)) ORDER BY id
