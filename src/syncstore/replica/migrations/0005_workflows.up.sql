-- Workflows: the durable engine reads an execution's recorded steps and signals
-- by (execution, kind) on every resume; this local index keeps that one seek.
-- execution_snapshots gains the kind 'signal' (schema.SNAPSHOT_KINDS): kinds are
-- checked by the schema definition, not by SQL, so no column changes here.
CREATE INDEX execution_snapshots_execution_kind_idx
    ON execution_snapshots (execution_id, kind, step_number);

-- Executions a process may need to resume, found by status without a scan.
CREATE INDEX workflow_executions_requested_status_idx
    ON workflow_executions (requested_status);
