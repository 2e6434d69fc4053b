-- Undo 0004: direct writes are no longer captured (rows they wrote stay, clocks and all).
DROP TRIGGER IF EXISTS direct_write_truncate ON syncstore.execution_snapshots;
DROP TRIGGER IF EXISTS direct_write_capture ON syncstore.execution_snapshots;
DROP TRIGGER IF EXISTS direct_write_stamp ON syncstore.execution_snapshots;
ALTER TABLE syncstore.execution_snapshots
    ALTER COLUMN id DROP DEFAULT,
    ALTER COLUMN state DROP DEFAULT,
    ALTER COLUMN variables DROP DEFAULT,
    ALTER COLUMN metadata DROP DEFAULT;
DROP TRIGGER IF EXISTS direct_write_truncate ON syncstore.workflow_executions;
DROP TRIGGER IF EXISTS direct_write_capture ON syncstore.workflow_executions;
DROP TRIGGER IF EXISTS direct_write_stamp ON syncstore.workflow_executions;
ALTER TABLE syncstore.workflow_executions
    ALTER COLUMN id DROP DEFAULT,
    ALTER COLUMN status DROP DEFAULT,
    ALTER COLUMN state DROP DEFAULT,
    ALTER COLUMN current_step DROP DEFAULT,
    ALTER COLUMN metadata DROP DEFAULT,
    ALTER COLUMN created_at DROP DEFAULT,
    ALTER COLUMN updated_at DROP DEFAULT;
DROP TRIGGER IF EXISTS direct_write_truncate ON syncstore.workflows;
DROP TRIGGER IF EXISTS direct_write_capture ON syncstore.workflows;
DROP TRIGGER IF EXISTS direct_write_stamp ON syncstore.workflows;
ALTER TABLE syncstore.workflows
    ALTER COLUMN id DROP DEFAULT,
    ALTER COLUMN version DROP DEFAULT,
    ALTER COLUMN description DROP DEFAULT,
    ALTER COLUMN tags DROP DEFAULT,
    ALTER COLUMN config DROP DEFAULT,
    ALTER COLUMN is_active DROP DEFAULT,
    ALTER COLUMN created_at DROP DEFAULT,
    ALTER COLUMN updated_at DROP DEFAULT;
DROP TRIGGER IF EXISTS direct_write_truncate ON syncstore.agent_memory;
DROP TRIGGER IF EXISTS direct_write_capture ON syncstore.agent_memory;
DROP TRIGGER IF EXISTS direct_write_stamp ON syncstore.agent_memory;
ALTER TABLE syncstore.agent_memory
    ALTER COLUMN id DROP DEFAULT,
    ALTER COLUMN importance DROP DEFAULT,
    ALTER COLUMN tags DROP DEFAULT,
    ALTER COLUMN context DROP DEFAULT,
    ALTER COLUMN access_count DROP DEFAULT,
    ALTER COLUMN is_active DROP DEFAULT,
    ALTER COLUMN metadata DROP DEFAULT,
    ALTER COLUMN created_at DROP DEFAULT,
    ALTER COLUMN updated_at DROP DEFAULT;
DROP TRIGGER IF EXISTS direct_write_truncate ON syncstore.observability_events;
DROP TRIGGER IF EXISTS direct_write_capture ON syncstore.observability_events;
DROP TRIGGER IF EXISTS direct_write_stamp ON syncstore.observability_events;
ALTER TABLE syncstore.observability_events
    ALTER COLUMN id DROP DEFAULT,
    ALTER COLUMN severity DROP DEFAULT,
    ALTER COLUMN data DROP DEFAULT;
DROP TRIGGER IF EXISTS direct_write_truncate ON syncstore.agent_executions;
DROP TRIGGER IF EXISTS direct_write_capture ON syncstore.agent_executions;
DROP TRIGGER IF EXISTS direct_write_stamp ON syncstore.agent_executions;
ALTER TABLE syncstore.agent_executions
    ALTER COLUMN id DROP DEFAULT,
    ALTER COLUMN status DROP DEFAULT,
    ALTER COLUMN metadata DROP DEFAULT,
    ALTER COLUMN created_at DROP DEFAULT,
    ALTER COLUMN updated_at DROP DEFAULT;
DROP TRIGGER IF EXISTS direct_write_truncate ON syncstore.environments;
DROP TRIGGER IF EXISTS direct_write_capture ON syncstore.environments;
DROP TRIGGER IF EXISTS direct_write_stamp ON syncstore.environments;
ALTER TABLE syncstore.environments
    ALTER COLUMN id DROP DEFAULT,
    ALTER COLUMN description DROP DEFAULT,
    ALTER COLUMN github_organization DROP DEFAULT,
    ALTER COLUMN github_repository DROP DEFAULT,
    ALTER COLUMN is_active DROP DEFAULT,
    ALTER COLUMN schema_version DROP DEFAULT,
    ALTER COLUMN config DROP DEFAULT,
    ALTER COLUMN created_at DROP DEFAULT,
    ALTER COLUMN updated_at DROP DEFAULT;
DROP TRIGGER IF EXISTS direct_write_truncate ON syncstore.task_messages;
DROP TRIGGER IF EXISTS direct_write_capture ON syncstore.task_messages;
DROP TRIGGER IF EXISTS direct_write_stamp ON syncstore.task_messages;
ALTER TABLE syncstore.task_messages
    ALTER COLUMN id DROP DEFAULT,
    ALTER COLUMN type DROP DEFAULT,
    ALTER COLUMN content DROP DEFAULT,
    ALTER COLUMN data DROP DEFAULT;
DROP TRIGGER IF EXISTS direct_write_truncate ON syncstore.tasks;
DROP TRIGGER IF EXISTS direct_write_capture ON syncstore.tasks;
DROP TRIGGER IF EXISTS direct_write_stamp ON syncstore.tasks;
ALTER TABLE syncstore.tasks
    ALTER COLUMN id DROP DEFAULT,
    ALTER COLUMN description DROP DEFAULT,
    ALTER COLUMN status DROP DEFAULT,
    ALTER COLUMN priority DROP DEFAULT,
    ALTER COLUMN branch DROP DEFAULT,
    ALTER COLUMN repository DROP DEFAULT,
    ALTER COLUMN session_id DROP DEFAULT,
    ALTER COLUMN mode DROP DEFAULT,
    ALTER COLUMN is_archived DROP DEFAULT,
    ALTER COLUMN has_changes DROP DEFAULT,
    ALTER COLUMN metadata DROP DEFAULT,
    ALTER COLUMN created_at DROP DEFAULT,
    ALTER COLUMN updated_at DROP DEFAULT;
DROP FUNCTION syncstore.direct_write_no_truncate();
DROP FUNCTION syncstore.direct_write_capture();
DROP FUNCTION syncstore.direct_write_stamp();
DROP FUNCTION syncstore._direct_write_check(text, jsonb, text[]);
DROP FUNCTION syncstore._clocks_encode(text[], bigint[], bytea[]);
DROP FUNCTION syncstore._clocks_decode(bytea);
DROP FUNCTION syncstore._mp_uint(bytea, integer, integer);
DROP TABLE syncstore.direct_write_rules;
DROP TABLE syncstore.direct_writes;
DROP FUNCTION syncstore.sql_site();
