-- Undo 0003: no routing keys, no horizon (a compacted log stays compacted).
DROP TABLE syncstore.log_horizon;
ALTER TABLE syncstore.change_log DROP COLUMN routing;
