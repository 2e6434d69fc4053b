DROP TABLE _ss_sync_skipped;
