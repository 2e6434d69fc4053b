-- Shapes, bootstrap and compaction.
--
-- routing: per log entry, the routing keys of every row it touches (MessagePack
-- list of [table, id, after, before, full], see syncstore.core.shapes.RowKeys):
-- the row's indexed values after the entry, the old values of indexed columns it
-- changed, and the whole row when it changed any (a row moving into a shape is
-- sent whole). Server-only: clients receive the payload. NULL: not recorded (the
-- cells the entry carries decide, see docs/shapes-bootstrap-compaction.md).
ALTER TABLE syncstore.change_log ADD COLUMN routing bytea;

-- Per tenant, the oldest log position the log still serves. Compaction raises it
-- when it collects tombstones (the log before it is gone); a client whose cursor
-- is older is told to re-snapshot. No row: 0 (the whole log is there).
CREATE TABLE syncstore.log_horizon (
    tenant text PRIMARY KEY,
    oldest bigint NOT NULL DEFAULT 0,
    compacted_at timestamptz,
    rows_collected bigint NOT NULL DEFAULT 0
);
