-- Rows the server sent in a snapshot that this replica could not take (a value
-- its schema refuses, a column it does not know): kept here with the reason,
-- instead of failing the snapshot, and with it every later sync, for good.
-- Local-only, like the rest of the sync state; sync_status() counts them.
CREATE TABLE _ss_sync_skipped (
    tbl TEXT NOT NULL,
    pk TEXT NOT NULL,
    problem TEXT NOT NULL,
    cells BLOB NOT NULL,  -- the cells as received (MessagePack {column: [value, hlc, site]})
    skipped_at TEXT NOT NULL,
    PRIMARY KEY (tbl, pk)
);
