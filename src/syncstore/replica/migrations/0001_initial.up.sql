-- The first replica schema: the synced tables and syncstore's own bookkeeping.
-- Synced tables hold only live rows; deleted rows leave a tombstone in _ss_tombstones.
-- Hidden columns: _hlc/_site are the clock of the row's insert (the base clock of
-- every column), _clocks a MessagePack map {column: [hlc, site]} of columns written since.

CREATE TABLE tasks (
    id TEXT PRIMARY KEY NOT NULL,
    title TEXT,
    description TEXT,
    status TEXT,
    priority TEXT,
    branch TEXT,
    repository TEXT,
    session_id TEXT,
    mode TEXT,
    is_archived INTEGER,
    has_changes INTEGER,
    status_message TEXT,
    pull_request TEXT,
    user_id TEXT,
    metadata TEXT,
    created_at TEXT,
    updated_at TEXT,
    _hlc INTEGER NOT NULL,
    _site BLOB NOT NULL,
    _clocks BLOB
);
CREATE INDEX tasks_status_idx ON tasks (status);
CREATE INDEX tasks_repository_idx ON tasks (repository);
CREATE INDEX tasks_user_id_idx ON tasks (user_id);
CREATE INDEX tasks_updated_at_idx ON tasks (updated_at);

CREATE TABLE task_messages (
    id TEXT PRIMARY KEY NOT NULL,
    task_id TEXT,
    position INTEGER,
    role TEXT,
    type TEXT,
    content TEXT,
    data TEXT,
    created_at TEXT,
    _hlc INTEGER NOT NULL,
    _site BLOB NOT NULL,
    _clocks BLOB
);
CREATE INDEX task_messages_task_id_idx ON task_messages (task_id);

CREATE TABLE environments (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT,
    description TEXT,
    github_organization TEXT,
    github_repository TEXT,
    is_active INTEGER,
    schema_version INTEGER,
    config TEXT,
    user_id TEXT,
    created_at TEXT,
    updated_at TEXT,
    _hlc INTEGER NOT NULL,
    _site BLOB NOT NULL,
    _clocks BLOB
);
CREATE INDEX environments_user_id_idx ON environments (user_id);
CREATE INDEX environments_is_active_idx ON environments (is_active);

CREATE TABLE agent_executions (
    id TEXT PRIMARY KEY NOT NULL,
    task_id TEXT,
    agent_type TEXT,
    status TEXT,
    input TEXT,
    output TEXT,
    error TEXT,
    started_at TEXT,
    completed_at TEXT,
    duration_ms REAL,
    token_usage TEXT,
    cost REAL,
    provider TEXT,
    model TEXT,
    trace_id TEXT,
    span_id TEXT,
    correlation_id TEXT,
    metadata TEXT,
    created_at TEXT,
    updated_at TEXT,
    _hlc INTEGER NOT NULL,
    _site BLOB NOT NULL,
    _clocks BLOB
);
CREATE INDEX agent_executions_task_id_idx ON agent_executions (task_id);
CREATE INDEX agent_executions_agent_type_idx ON agent_executions (agent_type);
CREATE INDEX agent_executions_status_idx ON agent_executions (status);
CREATE INDEX agent_executions_trace_id_idx ON agent_executions (trace_id);
CREATE INDEX agent_executions_started_at_idx ON agent_executions (started_at);

CREATE TABLE observability_events (
    id TEXT PRIMARY KEY NOT NULL,
    execution_id TEXT,
    event_type TEXT,
    timestamp TEXT,
    severity TEXT,
    component TEXT,
    operation TEXT,
    duration_ms REAL,
    error_code TEXT,
    error_message TEXT,
    error_stack TEXT,
    trace_id TEXT,
    span_id TEXT,
    parent_span_id TEXT,
    correlation_id TEXT,
    data TEXT,
    _hlc INTEGER NOT NULL,
    _site BLOB NOT NULL,
    _clocks BLOB
);
CREATE INDEX observability_events_execution_id_idx ON observability_events (execution_id);
CREATE INDEX observability_events_timestamp_idx ON observability_events (timestamp);
CREATE INDEX observability_events_severity_idx ON observability_events (severity);
CREATE INDEX observability_events_component_idx ON observability_events (component);
CREATE INDEX observability_events_trace_id_idx ON observability_events (trace_id);

CREATE TABLE agent_memory (
    id TEXT PRIMARY KEY NOT NULL,
    agent_id TEXT,
    memory_type TEXT,
    content TEXT,
    context_key TEXT,
    importance INTEGER,
    tags TEXT,
    context TEXT,
    last_accessed_at TEXT,
    access_count INTEGER,
    expires_at TEXT,
    is_active INTEGER,
    embedding BLOB,
    embedding_model TEXT,
    embedding_dimensions INTEGER,
    metadata TEXT,
    created_at TEXT,
    updated_at TEXT,
    _hlc INTEGER NOT NULL,
    _site BLOB NOT NULL,
    _clocks BLOB
);
CREATE INDEX agent_memory_agent_id_idx ON agent_memory (agent_id);
CREATE INDEX agent_memory_memory_type_idx ON agent_memory (memory_type);
CREATE INDEX agent_memory_context_key_idx ON agent_memory (context_key);
CREATE INDEX agent_memory_embedding_model_idx ON agent_memory (embedding_model);

CREATE TABLE workflows (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT,
    version INTEGER,
    definition TEXT,
    description TEXT,
    tags TEXT,
    config TEXT,
    schedule TEXT,
    is_active INTEGER,
    created_by TEXT,
    created_at TEXT,
    updated_at TEXT,
    _hlc INTEGER NOT NULL,
    _site BLOB NOT NULL,
    _clocks BLOB
);
CREATE INDEX workflows_name_idx ON workflows (name);

CREATE TABLE workflow_executions (
    id TEXT PRIMARY KEY NOT NULL,
    workflow_id TEXT,
    workflow_version INTEGER,
    status TEXT,
    requested_status TEXT,
    input TEXT,
    output TEXT,
    state TEXT,
    current_step INTEGER,
    total_steps INTEGER,
    error TEXT,
    started_at TEXT,
    completed_at TEXT,
    paused_at TEXT,
    triggered_by TEXT,
    parent_execution_id TEXT,
    lease_owner TEXT,
    lease_expires_at TEXT,
    metadata TEXT,
    created_at TEXT,
    updated_at TEXT,
    _hlc INTEGER NOT NULL,
    _site BLOB NOT NULL,
    _clocks BLOB
);
CREATE INDEX workflow_executions_workflow_id_idx ON workflow_executions (workflow_id);
CREATE INDEX workflow_executions_status_idx ON workflow_executions (status);

CREATE TABLE execution_snapshots (
    id TEXT PRIMARY KEY NOT NULL,
    execution_id TEXT,
    step_number INTEGER,
    step_name TEXT,
    kind TEXT,
    state TEXT,
    variables TEXT,
    output TEXT,
    timestamp TEXT,
    duration_ms REAL,
    memory_bytes INTEGER,
    cpu_ms REAL,
    metadata TEXT,
    _hlc INTEGER NOT NULL,
    _site BLOB NOT NULL,
    _clocks BLOB
);
CREATE INDEX execution_snapshots_execution_id_idx ON execution_snapshots (execution_id);

CREATE TABLE _ss_tombstones (
    tbl TEXT NOT NULL,
    pk TEXT NOT NULL,
    hlc INTEGER NOT NULL,
    site BLOB NOT NULL,
    PRIMARY KEY (tbl, pk)
) WITHOUT ROWID;

-- Local writes waiting to be (or already) pushed: one row per row written.
-- cols: MessagePack {column: value}; seen: {column: [hlc, site]} of the versions
-- the writer replaced (absent on insert), which the server uses to spot conflicts.
CREATE TABLE _ss_changes (
    seq INTEGER PRIMARY KEY,
    tx INTEGER NOT NULL,
    tbl TEXT NOT NULL,
    pk TEXT NOT NULL,
    hlc INTEGER NOT NULL,
    cols BLOB NOT NULL,
    seen BLOB
);
CREATE INDEX _ss_changes_tx_idx ON _ss_changes (tx);

-- The clock and counters, one row, updated by every write transaction.
CREATE TABLE _ss_clock (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_hlc INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    last_tx INTEGER NOT NULL
);
INSERT INTO _ss_clock (id, last_hlc, last_seq, last_tx) VALUES (1, 0, 0, 0);

-- Everything else the replica remembers about itself (site id, sync cursors).
CREATE TABLE _ss_meta (
    key TEXT PRIMARY KEY NOT NULL,
    value ANY
) STRICT;
