-- LangGraph's checkpoints, their channel values and pending writes, and its
-- long-term memory store (syncstore.integrations.langgraph). Synced tables like
-- the others; their row ids are UUIDv5 of LangGraph's own keys.

CREATE TABLE langgraph_checkpoints (
    id TEXT PRIMARY KEY NOT NULL,
    thread_id TEXT,
    checkpoint_ns TEXT,
    checkpoint_id TEXT,
    parent_checkpoint_id TEXT,
    run_id TEXT,
    type TEXT,
    checkpoint BLOB,
    metadata TEXT,
    created_at TEXT,
    _hlc INTEGER NOT NULL,
    _site BLOB NOT NULL,
    _clocks BLOB
);
-- A thread's latest checkpoint (and its history, newest first) is one seek.
CREATE INDEX langgraph_checkpoints_thread_id_idx ON langgraph_checkpoints (thread_id, checkpoint_ns, checkpoint_id);

CREATE TABLE langgraph_checkpoint_blobs (
    id TEXT PRIMARY KEY NOT NULL,
    thread_id TEXT,
    checkpoint_ns TEXT,
    channel TEXT,
    version TEXT,
    type TEXT,
    blob BLOB,
    _hlc INTEGER NOT NULL,
    _site BLOB NOT NULL,
    _clocks BLOB
);

CREATE TABLE langgraph_checkpoint_writes (
    id TEXT PRIMARY KEY NOT NULL,
    thread_id TEXT,
    checkpoint_ns TEXT,
    checkpoint_id TEXT,
    task_id TEXT,
    task_path TEXT,
    idx INTEGER,
    channel TEXT,
    type TEXT,
    blob BLOB,
    _hlc INTEGER NOT NULL,
    _site BLOB NOT NULL,
    _clocks BLOB
);
-- A checkpoint's pending writes are one seek.
CREATE INDEX langgraph_checkpoint_writes_thread_id_idx ON langgraph_checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id);

CREATE TABLE langgraph_store (
    id TEXT PRIMARY KEY NOT NULL,
    namespace TEXT,
    key TEXT,
    value TEXT,
    embeddings BLOB,
    embedding_fields TEXT,
    embedding_model TEXT,
    embedding_dimensions INTEGER,
    expires_at TEXT,
    ttl_minutes REAL,
    created_at TEXT,
    updated_at TEXT,
    _hlc INTEGER NOT NULL,
    _site BLOB NOT NULL,
    _clocks BLOB
);
-- Namespace prefixes are ranges of this index (see integrations/langgraph/namespaces.py).
CREATE INDEX langgraph_store_namespace_idx ON langgraph_store (namespace, key);
CREATE INDEX langgraph_store_expires_at_idx ON langgraph_store (expires_at);
