DROP TABLE _ss_held;
ALTER TABLE _ss_sync_rejected DROP COLUMN reverted_at;
DELETE FROM _ss_meta WHERE key IN ('sync.schema', 'sync.server_schema');
