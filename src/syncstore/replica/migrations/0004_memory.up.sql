-- Agent memory's local-only bookkeeping. Nothing here is synced or logged.

-- A feed of agent_memory rows that changed, kept by triggers, so that every
-- search index (in this process, in another process on the same file, or one
-- rebuilt after a crash) catches up by reading "seq > my cursor", whatever
-- wrote the row: a local write, a synced change, a raw SQL statement.
-- One entry per memory: a new write moves the entry to a new, higher seq.
-- Writers are serialised by SQLite, so seq order is commit order.
CREATE TABLE _ss_memory_feed (
    memory_id TEXT PRIMARY KEY NOT NULL,
    seq INTEGER NOT NULL
);
CREATE UNIQUE INDEX _ss_memory_feed_seq_idx ON _ss_memory_feed (seq);

CREATE TRIGGER _ss_memory_feed_insert AFTER INSERT ON agent_memory BEGIN
    INSERT OR REPLACE INTO _ss_memory_feed (memory_id, seq)
    VALUES (new.id, (SELECT coalesce(max(seq), 0) + 1 FROM _ss_memory_feed));
END;

CREATE TRIGGER _ss_memory_feed_update AFTER UPDATE ON agent_memory BEGIN
    INSERT OR REPLACE INTO _ss_memory_feed (memory_id, seq)
    VALUES (new.id, (SELECT coalesce(max(seq), 0) + 1 FROM _ss_memory_feed));
END;

CREATE TRIGGER _ss_memory_feed_delete AFTER DELETE ON agent_memory BEGIN
    INSERT OR REPLACE INTO _ss_memory_feed (memory_id, seq)
    VALUES (old.id, (SELECT coalesce(max(seq), 0) + 1 FROM _ss_memory_feed));
END;

-- Reads of a memory counted here, locally, so that a search does not turn
-- into a synced write per hit. Memory.flush_access() folds the pending counts
-- into the synced columns access_count and last_accessed_at in one write.
CREATE TABLE _ss_memory_access (
    memory_id TEXT PRIMARY KEY NOT NULL,
    pending INTEGER NOT NULL,
    last_accessed_at TEXT NOT NULL
) WITHOUT ROWID;
