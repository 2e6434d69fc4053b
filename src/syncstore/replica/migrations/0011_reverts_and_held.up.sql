-- Rejected writes go back to the server's state, and changes an older server
-- cannot take wait here (local-only tables, like the rest of the sync state).
--
-- 1. reverted_at: when the rows a refused transaction wrote were returned to
--    the server's state here (NULL: not yet; the sync client fetches them on
--    its next connection). Transactions refused before this migration were
--    never reverted: they are, on the next connection.
ALTER TABLE _ss_sync_rejected ADD COLUMN reverted_at TEXT;

-- 2. Parts of local changes an older server could not take (columns or
--    tables added in a later schema version): the rest of each change was
--    pushed; these are written again, as new local changes, once a server
--    that knows them is met. seq: the change log entry they came from; cols
--    and seen as in _ss_changes; since: the schema version they need.
CREATE TABLE _ss_held (
    seq INTEGER PRIMARY KEY NOT NULL,
    tbl TEXT NOT NULL,
    pk TEXT NOT NULL,
    hlc INTEGER NOT NULL,
    cols BLOB NOT NULL,
    seen BLOB,
    since INTEGER NOT NULL,
    held_at TEXT NOT NULL
);
