-- Jobs whose worker was lost are "suspects" (they may be what killed it): a worker claims at
-- most one of them at a time, so a job that kills its process cannot take other suspects with
-- it again and again. This index finds them without reading the other pending jobs.
CREATE INDEX roadie_jobs_pending_suspects ON roadie_jobs (queue, priority DESC, id)
    WHERE state = 'pending' AND lost_count > 0;
