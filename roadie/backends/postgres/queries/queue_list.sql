-- Queues an administrator has paused or resumed.
SELECT * FROM roadie_queues ORDER BY name
