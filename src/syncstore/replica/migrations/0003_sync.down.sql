DROP TABLE _ss_conflicts;
DROP TABLE _ss_sync_rejected;
DELETE FROM _ss_meta WHERE key LIKE 'sync.%';
