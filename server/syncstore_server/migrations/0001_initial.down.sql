-- Undo 0001: drop everything it made (the vector extension stays: others may use it).
DROP TABLE IF EXISTS syncstore.server_meta;
DROP TABLE IF EXISTS syncstore.rejections;
DROP TABLE IF EXISTS syncstore.site_acks;
DROP TABLE IF EXISTS syncstore.conflicts;
DROP TABLE IF EXISTS syncstore.change_log;
DROP TABLE IF EXISTS syncstore.execution_snapshots;
DROP TABLE IF EXISTS syncstore.workflow_executions;
DROP TABLE IF EXISTS syncstore.workflows;
DROP TABLE IF EXISTS syncstore.agent_memory;
DROP TABLE IF EXISTS syncstore.observability_events;
DROP TABLE IF EXISTS syncstore.agent_executions;
DROP TABLE IF EXISTS syncstore.environments;
DROP TABLE IF EXISTS syncstore.task_messages;
DROP TABLE IF EXISTS syncstore.tasks;
DROP SEQUENCE IF EXISTS syncstore.change_log_seq;
