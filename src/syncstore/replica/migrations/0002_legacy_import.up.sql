-- Local-only tables of the legacy import. They are not synced tables: no hidden
-- clock columns, no change capture, nothing in _ss_changes, so nothing in them
-- ever leaves this machine.

-- Secrets kept on this machine only, e.g. a legacy environment's GitHub token.
-- One value per (owner table, owner row, name).
CREATE TABLE local_secrets (
    owner_table TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (owner_table, owner_id, name)
) WITHOUT ROWID;

-- One row per import that wrote something. summary: the report as JSON (it never
-- holds a secret). rolled_back_at/rollback_summary: set by `import rollback`.
CREATE TABLE legacy_imports (
    id TEXT PRIMARY KEY NOT NULL,
    imported_at TEXT NOT NULL,
    source TEXT NOT NULL,
    source_sha256 TEXT NOT NULL,
    options TEXT NOT NULL,
    summary TEXT NOT NULL,
    rolled_back_at TEXT,
    rollback_summary TEXT
);

-- The rows each import wrote, so a rollback removes exactly those.
-- op: 'insert' (a new row), 'update' (columns of an existing row; detail holds
-- their earlier values as JSON), 'secret' (a local_secrets row; pk is the owner id;
-- detail 'replaced' when it replaced an earlier value). Messages are recorded per
-- task: tbl 'task_messages', pk the task id, detail the positions added, as JSON
-- [start, end) ranges.
-- hlc: the clock stamp the import wrote with; a row whose clocks moved past it was
-- edited since. undone_hlc: the stamp of the tombstone a rollback left.
CREATE TABLE legacy_import_rows (
    import_id TEXT NOT NULL,
    tbl TEXT NOT NULL,
    pk TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('insert', 'update', 'secret')),
    hlc INTEGER NOT NULL,
    detail TEXT,
    undone_hlc INTEGER,
    PRIMARY KEY (import_id, tbl, pk)
) WITHOUT ROWID;
CREATE INDEX legacy_import_rows_pk_idx ON legacy_import_rows (tbl, pk);
