-- Local-only tables of the sync client. Not synced tables: no hidden clock
-- columns, no change capture, so nothing in them is ever pushed. The rest of the
-- sync state (acked sequence, cursor, tenant, last error) is keys 'sync.*' in _ss_meta.

-- Local transactions the server refused for good. They were acknowledged (the
-- client does not send them again and later changes are not held back); the
-- record keeps what was refused and why, for `syncstore sync rejected`.
-- changes: MessagePack of the LocalTx as it was pushed.
CREATE TABLE _ss_sync_rejected (
    tx INTEGER PRIMARY KEY NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    changes BLOB NOT NULL,
    rejected_at TEXT NOT NULL
);

-- Conflict records the server sent for this tenant's rows: a concurrent edit it
-- resolved by last-write-wins. Values are canonical stored values.
-- resolution: 'winner', 'loser' or 'value' once resolved here; reported: whether
-- the server has been told (a Resolved message) of the resolution.
CREATE TABLE _ss_conflicts (
    id TEXT PRIMARY KEY NOT NULL,
    tbl TEXT NOT NULL,
    row_id TEXT NOT NULL,
    col TEXT NOT NULL,
    winner_value ANY,
    winner_hlc INTEGER NOT NULL,
    winner_site BLOB NOT NULL,
    loser_value ANY,
    loser_hlc INTEGER NOT NULL,
    loser_site BLOB NOT NULL,
    incoming_won INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    server_seq INTEGER NOT NULL,
    received_at TEXT NOT NULL,
    resolved_at TEXT,
    resolution TEXT,
    reported INTEGER NOT NULL DEFAULT 0
) STRICT;  -- STRICT keeps ANY values exactly as given (no type affinity)
CREATE INDEX _ss_conflicts_row_idx ON _ss_conflicts (tbl, row_id);
CREATE INDEX _ss_conflicts_open_idx ON _ss_conflicts (resolved_at);
