DROP TRIGGER _ss_memory_feed_insert;
DROP TRIGGER _ss_memory_feed_update;
DROP TRIGGER _ss_memory_feed_delete;
DROP TABLE _ss_memory_feed;
DROP TABLE _ss_memory_access;
