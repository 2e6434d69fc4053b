-- LangGraph's checkpoints, channel values, pending writes and long-term memory store
-- (syncstore.integrations.langgraph): synced tables like the others (see 0001 for the
-- hidden columns, 0004 for direct writes). Their row ids are made from LangGraph's own
-- keys (syncstore/integrations/langgraph/keys.py), so replicas of one tenant writing
-- one checkpoint write one row.

-- langgraph_checkpoints: per-column merge (rows written once, ids from LangGraph's keys)
CREATE TABLE syncstore.langgraph_checkpoints (
    tenant text NOT NULL,
    id text NOT NULL,
    thread_id text,
    checkpoint_ns text,
    checkpoint_id text,
    parent_checkpoint_id text,
    run_id text,
    type text,
    checkpoint bytea,
    metadata jsonb,
    created_at timestamptz,
    _deleted boolean NOT NULL DEFAULT false,
    _hlc bigint NOT NULL,
    _site bytea NOT NULL,
    _clocks bytea,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX langgraph_checkpoints_thread_id_idx ON syncstore.langgraph_checkpoints (tenant, thread_id, checkpoint_ns, checkpoint_id);

-- langgraph_checkpoint_blobs: per-column merge (rows written once, ids from LangGraph's keys)
CREATE TABLE syncstore.langgraph_checkpoint_blobs (
    tenant text NOT NULL,
    id text NOT NULL,
    thread_id text,
    checkpoint_ns text,
    channel text,
    version text,
    type text,
    blob bytea,
    _deleted boolean NOT NULL DEFAULT false,
    _hlc bigint NOT NULL,
    _site bytea NOT NULL,
    _clocks bytea,
    PRIMARY KEY (tenant, id)
);

-- langgraph_checkpoint_writes: per-column merge (rows written once, ids from LangGraph's keys)
CREATE TABLE syncstore.langgraph_checkpoint_writes (
    tenant text NOT NULL,
    id text NOT NULL,
    thread_id text,
    checkpoint_ns text,
    checkpoint_id text,
    task_id text,
    task_path text,
    idx bigint,
    channel text,
    type text,
    blob bytea,
    _deleted boolean NOT NULL DEFAULT false,
    _hlc bigint NOT NULL,
    _site bytea NOT NULL,
    _clocks bytea,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX langgraph_checkpoint_writes_thread_id_idx ON syncstore.langgraph_checkpoint_writes (tenant, thread_id, checkpoint_ns, checkpoint_id);

-- langgraph_store: per-column merge (one row per namespace and key)
CREATE TABLE syncstore.langgraph_store (
    tenant text NOT NULL,
    id text NOT NULL,
    namespace text,
    key text,
    value jsonb,
    embeddings bytea,
    embedding_fields jsonb,
    embedding_model text,
    embedding_dimensions bigint,
    expires_at timestamptz,
    ttl_minutes double precision,
    created_at timestamptz,
    updated_at timestamptz,
    _deleted boolean NOT NULL DEFAULT false,
    _hlc bigint NOT NULL,
    _site bytea NOT NULL,
    _clocks bytea,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX langgraph_store_namespace_idx ON syncstore.langgraph_store (tenant, namespace, key);
CREATE INDEX langgraph_store_expires_at_idx ON syncstore.langgraph_store (tenant, expires_at);

-- Direct writes (migration 0004): the same rules, defaults and triggers as every synced table.
INSERT INTO syncstore.direct_write_rules (tbl, col, kind, required, choices, minimum, maximum, shape, indexed) VALUES
    ('langgraph_checkpoints', 'thread_id', 'text', true, NULL, NULL, NULL, NULL, true),
    ('langgraph_checkpoints', 'checkpoint_ns', 'text', false, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoints', 'checkpoint_id', 'text', true, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoints', 'parent_checkpoint_id', 'text', false, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoints', 'run_id', 'text', false, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoints', 'type', 'text', false, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoints', 'checkpoint', 'blob', false, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoints', 'metadata', 'json', false, NULL, NULL, NULL, 'object', false),
    ('langgraph_checkpoints', 'created_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoint_blobs', 'thread_id', 'text', true, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoint_blobs', 'checkpoint_ns', 'text', false, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoint_blobs', 'channel', 'text', true, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoint_blobs', 'version', 'text', true, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoint_blobs', 'type', 'text', false, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoint_blobs', 'blob', 'blob', false, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoint_writes', 'thread_id', 'text', true, NULL, NULL, NULL, NULL, true),
    ('langgraph_checkpoint_writes', 'checkpoint_ns', 'text', false, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoint_writes', 'checkpoint_id', 'text', true, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoint_writes', 'task_id', 'text', true, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoint_writes', 'task_path', 'text', false, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoint_writes', 'idx', 'integer', true, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoint_writes', 'channel', 'text', true, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoint_writes', 'type', 'text', false, NULL, NULL, NULL, NULL, false),
    ('langgraph_checkpoint_writes', 'blob', 'blob', false, NULL, NULL, NULL, NULL, false),
    ('langgraph_store', 'namespace', 'text', true, NULL, NULL, NULL, NULL, true),
    ('langgraph_store', 'key', 'text', true, NULL, NULL, NULL, NULL, false),
    ('langgraph_store', 'value', 'json', true, NULL, NULL, NULL, 'object', false),
    ('langgraph_store', 'embeddings', 'blob', false, NULL, NULL, NULL, NULL, false),
    ('langgraph_store', 'embedding_fields', 'json', false, NULL, NULL, NULL, 'array', false),
    ('langgraph_store', 'embedding_model', 'text', false, NULL, NULL, NULL, NULL, false),
    ('langgraph_store', 'embedding_dimensions', 'integer', false, NULL, 1, NULL, NULL, false),
    ('langgraph_store', 'expires_at', 'timestamp', false, NULL, NULL, NULL, NULL, true),
    ('langgraph_store', 'ttl_minutes', 'real', false, NULL, 0, NULL, NULL, false),
    ('langgraph_store', 'created_at', 'timestamp', false, NULL, NULL, NULL, NULL, false),
    ('langgraph_store', 'updated_at', 'timestamp', false, NULL, NULL, NULL, NULL, false);

-- langgraph_checkpoints
ALTER TABLE syncstore.langgraph_checkpoints
    ALTER COLUMN id SET DEFAULT gen_random_uuid()::text,
    ALTER COLUMN checkpoint_ns SET DEFAULT '',
    ALTER COLUMN metadata SET DEFAULT '{}'::jsonb,
    ALTER COLUMN created_at SET DEFAULT now();
CREATE TRIGGER direct_write_stamp BEFORE INSERT OR UPDATE OR DELETE ON syncstore.langgraph_checkpoints
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_stamp('merge');
CREATE TRIGGER direct_write_capture AFTER INSERT OR UPDATE ON syncstore.langgraph_checkpoints
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_capture();
CREATE TRIGGER direct_write_truncate BEFORE TRUNCATE ON syncstore.langgraph_checkpoints
    FOR EACH STATEMENT WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_no_truncate();

-- langgraph_checkpoint_blobs
ALTER TABLE syncstore.langgraph_checkpoint_blobs
    ALTER COLUMN id SET DEFAULT gen_random_uuid()::text,
    ALTER COLUMN checkpoint_ns SET DEFAULT '';
CREATE TRIGGER direct_write_stamp BEFORE INSERT OR UPDATE OR DELETE ON syncstore.langgraph_checkpoint_blobs
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_stamp('merge');
CREATE TRIGGER direct_write_capture AFTER INSERT OR UPDATE ON syncstore.langgraph_checkpoint_blobs
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_capture();
CREATE TRIGGER direct_write_truncate BEFORE TRUNCATE ON syncstore.langgraph_checkpoint_blobs
    FOR EACH STATEMENT WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_no_truncate();

-- langgraph_checkpoint_writes
ALTER TABLE syncstore.langgraph_checkpoint_writes
    ALTER COLUMN id SET DEFAULT gen_random_uuid()::text,
    ALTER COLUMN checkpoint_ns SET DEFAULT '',
    ALTER COLUMN task_path SET DEFAULT '';
CREATE TRIGGER direct_write_stamp BEFORE INSERT OR UPDATE OR DELETE ON syncstore.langgraph_checkpoint_writes
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_stamp('merge');
CREATE TRIGGER direct_write_capture AFTER INSERT OR UPDATE ON syncstore.langgraph_checkpoint_writes
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_capture();
CREATE TRIGGER direct_write_truncate BEFORE TRUNCATE ON syncstore.langgraph_checkpoint_writes
    FOR EACH STATEMENT WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_no_truncate();

-- langgraph_store
ALTER TABLE syncstore.langgraph_store
    ALTER COLUMN id SET DEFAULT gen_random_uuid()::text,
    ALTER COLUMN created_at SET DEFAULT now(),
    ALTER COLUMN updated_at SET DEFAULT now();
CREATE TRIGGER direct_write_stamp BEFORE INSERT OR UPDATE OR DELETE ON syncstore.langgraph_store
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_stamp('merge');
CREATE TRIGGER direct_write_capture AFTER INSERT OR UPDATE ON syncstore.langgraph_store
    FOR EACH ROW WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_capture();
CREATE TRIGGER direct_write_truncate BEFORE TRUNCATE ON syncstore.langgraph_store
    FOR EACH STATEMENT WHEN (current_setting('syncstore.writer', true) IS DISTINCT FROM 'server')
    EXECUTE FUNCTION syncstore.direct_write_no_truncate();

