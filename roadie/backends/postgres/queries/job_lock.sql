-- A parent about to be judged, locked so that children ending at once take turns.
SELECT * FROM roadie_jobs WHERE id = %(id)s FOR UPDATE
