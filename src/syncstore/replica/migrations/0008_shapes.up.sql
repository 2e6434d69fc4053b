-- The shapes this replica syncs (local-only, like the rest of the sync state).
-- One row per shape (a table, or a table with equality/IN filters): whether its
-- rows still need a snapshot ('snapshot') or arrive from the log ('live'), and
-- for a snapshot cut off midway, where it continues: the key of the last chunk
-- applied (resume) and the log position the snapshot started at (position),
-- written in the same transaction as the chunk's rows.
CREATE TABLE _ss_shapes (
    key TEXT PRIMARY KEY NOT NULL,  -- the shape as canonical JSON
    tbl TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('snapshot', 'live')),
    position INTEGER NOT NULL DEFAULT 0,
    resume TEXT NOT NULL DEFAULT '',
    added_at TEXT NOT NULL
);
