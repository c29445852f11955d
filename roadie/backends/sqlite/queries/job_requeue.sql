-- An administrator retries an ended job: a new attempt (numbers keep counting) with a fresh
-- allowance of :allowance attempts, due now, off the review list. New :args replace the old ones,
-- which are kept in args_history.
UPDATE roadie_jobs
SET state = 'pending',
    run_at = coalesce(:now, (julianday('now') - 2440587.5) * 86400.0),
    scheduled = 0,
    finished_at = NULL,
    failure = NULL,
    needs_review = 0,
    lost_count = 0,
    max_attempts = attempt + :allowance,
    args = coalesce(:args, args),
    args_history = CASE WHEN :args IS NULL THEN args_history
        ELSE json_insert(args_history, '$[#]', json_object(
            'args', json(args), 'replaced_at', strftime('%Y-%m-%dT%H:%M:%fZ', coalesce(:now, (julianday('now') - 2440587.5) * 86400.0), 'unixepoch'), 'attempt', attempt)) END
WHERE id = :id AND state IN ('failed', 'cancelled')
RETURNING *
