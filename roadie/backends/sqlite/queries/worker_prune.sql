-- Forget workers that stopped, or went silent, before :before.
DELETE FROM roadie_workers WHERE coalesce(stopped_at, heartbeat_at) < :before
