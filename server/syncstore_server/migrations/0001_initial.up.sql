-- The first server schema: the synced tables, the change log, conflict records,
-- per-site acks and push rejections, all in the schema "syncstore" (created by the
-- migration runner before this file runs).
--
-- Synced tables: every column of syncstore.schema.TABLES with its real PostgreSQL
-- type, plus the owning tenant (taken from the writer's token, never from a row):
-- the primary key (tenant, id) keeps each tenant's rows apart even when ids collide.
-- Hidden columns, the same scheme as the client replica:
--   _deleted  the row is a tombstone (kept, so an older write arriving late loses)
--   _hlc/_site  the most common clock among the row's cells (its base clock)
--   _clocks   MessagePack {column: [hlc, site]} of the cells whose clock differs
-- Required columns are not NOT NULL here: the server checks them before any SQL.

-- pgvector where the server has it (and we may create it); else embeddings stay bytea.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
        BEGIN
            CREATE EXTENSION IF NOT EXISTS vector;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE NOTICE 'pgvector is installed but this role cannot create it: embeddings are stored as bytea';
        END;
    END IF;
END
$$;

-- tasks: per-column merge
CREATE TABLE syncstore.tasks (
    tenant text NOT NULL,
    id text NOT NULL,
    title text,
    description text,
    status text,
    priority text,
    branch text,
    repository text,
    session_id text,
    mode text,
    is_archived boolean,
    has_changes boolean,
    status_message text,
    pull_request jsonb,
    user_id text,
    metadata jsonb,
    created_at timestamptz,
    updated_at timestamptz,
    _deleted boolean NOT NULL DEFAULT false,
    _hlc bigint NOT NULL,
    _site bytea NOT NULL,
    _clocks bytea,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX tasks_status_idx ON syncstore.tasks (tenant, status);
CREATE INDEX tasks_repository_idx ON syncstore.tasks (tenant, repository);
CREATE INDEX tasks_user_id_idx ON syncstore.tasks (tenant, user_id);
CREATE INDEX tasks_updated_at_idx ON syncstore.tasks (tenant, updated_at);

-- task_messages: append-only
CREATE TABLE syncstore.task_messages (
    tenant text NOT NULL,
    id text NOT NULL,
    task_id text,
    position bigint,
    role text,
    type text,
    content text,
    data jsonb,
    created_at timestamptz,
    _deleted boolean NOT NULL DEFAULT false,
    _hlc bigint NOT NULL,
    _site bytea NOT NULL,
    _clocks bytea,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX task_messages_task_id_idx ON syncstore.task_messages (tenant, task_id);

-- environments: per-column merge
CREATE TABLE syncstore.environments (
    tenant text NOT NULL,
    id text NOT NULL,
    name text,
    description text,
    github_organization text,
    github_repository text,
    is_active boolean,
    schema_version bigint,
    config jsonb,
    user_id text,
    created_at timestamptz,
    updated_at timestamptz,
    _deleted boolean NOT NULL DEFAULT false,
    _hlc bigint NOT NULL,
    _site bytea NOT NULL,
    _clocks bytea,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX environments_user_id_idx ON syncstore.environments (tenant, user_id);
CREATE INDEX environments_is_active_idx ON syncstore.environments (tenant, is_active);

-- agent_executions: per-column merge
CREATE TABLE syncstore.agent_executions (
    tenant text NOT NULL,
    id text NOT NULL,
    task_id text,
    agent_type text,
    status text,
    input jsonb,
    output jsonb,
    error text,
    started_at timestamptz,
    completed_at timestamptz,
    duration_ms double precision,
    token_usage jsonb,
    cost double precision,
    provider text,
    model text,
    trace_id text,
    span_id text,
    correlation_id text,
    metadata jsonb,
    created_at timestamptz,
    updated_at timestamptz,
    _deleted boolean NOT NULL DEFAULT false,
    _hlc bigint NOT NULL,
    _site bytea NOT NULL,
    _clocks bytea,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX agent_executions_task_id_idx ON syncstore.agent_executions (tenant, task_id);
CREATE INDEX agent_executions_agent_type_idx ON syncstore.agent_executions (tenant, agent_type);
CREATE INDEX agent_executions_status_idx ON syncstore.agent_executions (tenant, status);
CREATE INDEX agent_executions_trace_id_idx ON syncstore.agent_executions (tenant, trace_id);
CREATE INDEX agent_executions_started_at_idx ON syncstore.agent_executions (tenant, started_at);

-- observability_events: append-only
CREATE TABLE syncstore.observability_events (
    tenant text NOT NULL,
    id text NOT NULL,
    execution_id text,
    event_type text,
    timestamp timestamptz,
    severity text,
    component text,
    operation text,
    duration_ms double precision,
    error_code text,
    error_message text,
    error_stack text,
    trace_id text,
    span_id text,
    parent_span_id text,
    correlation_id text,
    data jsonb,
    _deleted boolean NOT NULL DEFAULT false,
    _hlc bigint NOT NULL,
    _site bytea NOT NULL,
    _clocks bytea,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX observability_events_execution_id_idx ON syncstore.observability_events (tenant, execution_id);
CREATE INDEX observability_events_timestamp_idx ON syncstore.observability_events (tenant, timestamp);
CREATE INDEX observability_events_severity_idx ON syncstore.observability_events (tenant, severity);
CREATE INDEX observability_events_component_idx ON syncstore.observability_events (tenant, component);
CREATE INDEX observability_events_trace_id_idx ON syncstore.observability_events (tenant, trace_id);

-- agent_memory: per-column merge
CREATE TABLE syncstore.agent_memory (
    tenant text NOT NULL,
    id text NOT NULL,
    agent_id text,
    memory_type text,
    content text,
    context_key text,
    importance bigint,
    tags jsonb,
    context jsonb,
    last_accessed_at timestamptz,
    access_count bigint,
    expires_at timestamptz,
    is_active boolean,
    embedding bytea,
    embedding_model text,
    embedding_dimensions bigint,
    metadata jsonb,
    created_at timestamptz,
    updated_at timestamptz,
    _deleted boolean NOT NULL DEFAULT false,
    _hlc bigint NOT NULL,
    _site bytea NOT NULL,
    _clocks bytea,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX agent_memory_agent_id_idx ON syncstore.agent_memory (tenant, agent_id);
CREATE INDEX agent_memory_memory_type_idx ON syncstore.agent_memory (tenant, memory_type);
CREATE INDEX agent_memory_context_key_idx ON syncstore.agent_memory (tenant, context_key);
CREATE INDEX agent_memory_embedding_model_idx ON syncstore.agent_memory (tenant, embedding_model);

-- workflows: per-column merge
CREATE TABLE syncstore.workflows (
    tenant text NOT NULL,
    id text NOT NULL,
    name text,
    version bigint,
    definition jsonb,
    description text,
    tags jsonb,
    config jsonb,
    schedule text,
    is_active boolean,
    created_by text,
    created_at timestamptz,
    updated_at timestamptz,
    _deleted boolean NOT NULL DEFAULT false,
    _hlc bigint NOT NULL,
    _site bytea NOT NULL,
    _clocks bytea,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX workflows_name_idx ON syncstore.workflows (tenant, name);

-- workflow_executions: per-column merge
CREATE TABLE syncstore.workflow_executions (
    tenant text NOT NULL,
    id text NOT NULL,
    workflow_id text,
    workflow_version bigint,
    status text,
    requested_status text,
    input jsonb,
    output jsonb,
    state jsonb,
    current_step bigint,
    total_steps bigint,
    error text,
    started_at timestamptz,
    completed_at timestamptz,
    paused_at timestamptz,
    triggered_by text,
    parent_execution_id text,
    lease_owner text,
    lease_expires_at timestamptz,
    metadata jsonb,
    created_at timestamptz,
    updated_at timestamptz,
    _deleted boolean NOT NULL DEFAULT false,
    _hlc bigint NOT NULL,
    _site bytea NOT NULL,
    _clocks bytea,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX workflow_executions_workflow_id_idx ON syncstore.workflow_executions (tenant, workflow_id);
CREATE INDEX workflow_executions_status_idx ON syncstore.workflow_executions (tenant, status);

-- execution_snapshots: append-only
CREATE TABLE syncstore.execution_snapshots (
    tenant text NOT NULL,
    id text NOT NULL,
    execution_id text,
    step_number bigint,
    step_name text,
    kind text,
    state jsonb,
    variables jsonb,
    output jsonb,
    timestamp timestamptz,
    duration_ms double precision,
    memory_bytes bigint,
    cpu_ms double precision,
    metadata jsonb,
    _deleted boolean NOT NULL DEFAULT false,
    _hlc bigint NOT NULL,
    _site bytea NOT NULL,
    _clocks bytea,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX execution_snapshots_execution_id_idx ON syncstore.execution_snapshots (tenant, execution_id);

-- The embedding becomes a real vector where pgvector is there (the table is empty now).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') THEN
        ALTER TABLE syncstore.agent_memory ALTER COLUMN embedding TYPE vector USING NULL;
    END IF;
END
$$;

-- The change log: one entry per merged client transaction, in server sequence order.
-- seq is taken from the sequence while the tenant's advisory lock is held, and the
-- lock is held until commit, so a tenant's entries commit in seq order: a reader
-- that has seen seq N has seen every earlier entry of that tenant.
CREATE SEQUENCE syncstore.change_log_seq AS bigint;
CREATE TABLE syncstore.change_log (
    seq bigint PRIMARY KEY,
    tenant text NOT NULL,
    origin_site bytea NOT NULL,
    origin_tx bigint NOT NULL,
    tables text[] NOT NULL,
    payload bytea NOT NULL,  -- the ServerTx, MessagePack, as clients receive it
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX change_log_tenant_seq_idx ON syncstore.change_log (tenant, seq);

-- A concurrent edit resolved by last-write-wins. Values are canonical values,
-- MessagePack-encoded (None, int, float, str or bytes).
CREATE TABLE syncstore.conflicts (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    seq bigint NOT NULL,
    tbl text NOT NULL,
    row_id text NOT NULL,
    col text NOT NULL,
    winner_value bytea NOT NULL,
    winner_hlc bigint NOT NULL,
    winner_site bytea NOT NULL,
    loser_value bytea NOT NULL,
    loser_hlc bigint NOT NULL,
    loser_site bytea NOT NULL,
    incoming_won boolean NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    resolved_by text
);
CREATE INDEX conflicts_tenant_created_idx ON syncstore.conflicts (tenant, created_at);
CREATE INDEX conflicts_tenant_row_idx ON syncstore.conflicts (tenant, tbl, row_id);
CREATE INDEX conflicts_unresolved_idx ON syncstore.conflicts (tenant) WHERE resolved_at IS NULL;

-- Per (tenant, site): the highest local sequence durably merged. A push is applied
-- at most once because changes at or below it are skipped, in the same transaction
-- that raises it.
CREATE TABLE syncstore.site_acks (
    tenant text NOT NULL,
    site bytea NOT NULL,
    acked_seq bigint NOT NULL DEFAULT 0,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, site)
);

-- Client transactions refused for good (bad table, column, value or clock); the
-- ack moves past them so the client is never blocked, and they stay here to read.
CREATE TABLE syncstore.rejections (
    id bigserial PRIMARY KEY,
    tenant text NOT NULL,
    site bytea NOT NULL,
    tx bigint NOT NULL,
    first_seq bigint NOT NULL,
    last_seq bigint NOT NULL,
    code text NOT NULL,
    message text NOT NULL,
    changes bytea NOT NULL,  -- the refused LocalTx, MessagePack
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejections_tenant_site_idx ON syncstore.rejections (tenant, site, id);

-- What the server knows about itself: its site id (for writes it makes, such as
-- conflict resolutions).
CREATE TABLE syncstore.server_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO syncstore.server_meta (key, value)
VALUES ('site_id', replace(gen_random_uuid()::text, '-', ''));
