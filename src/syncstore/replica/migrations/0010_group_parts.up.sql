-- Parts of a server transaction logged as a group of entries (a transaction too
-- large for one log entry), kept here by the sync client as they arrive, until
-- the stream passes the group's end: then every part is applied in one local
-- transaction, with the cursor, and deleted. Local-only, like the rest of the
-- sync state; emptied at the start of each connection (the cursor is still
-- before the group, so the server sends it again whole).
-- tx: the ServerTx as received, MessagePack.
CREATE TABLE _ss_group_parts (
    seq INTEGER PRIMARY KEY NOT NULL,
    group_end INTEGER NOT NULL,
    tx BLOB NOT NULL
);
