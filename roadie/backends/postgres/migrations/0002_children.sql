-- Parent and child jobs: a parent's declared rules, stored when it starts waiting, and the key
-- that makes each callback job unique (one per child's ending, one on_complete per parent).
ALTER TABLE roadie_jobs ADD COLUMN callback_key text;
ALTER TABLE roadie_jobs ADD COLUMN on_child_complete text;
ALTER TABLE roadie_jobs ADD COLUMN on_complete text;
ALTER TABLE roadie_jobs ADD COLUMN on_child_failure text;
CREATE UNIQUE INDEX roadie_jobs_callback_key ON roadie_jobs (callback_key);
-- Counting a parent's open jobs reads only those still open, however many have ended.
CREATE INDEX roadie_jobs_open_children ON roadie_jobs (parent_id)
    WHERE parent_id IS NOT NULL AND state IN ('pending', 'running', 'waiting');
