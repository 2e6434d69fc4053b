"""Typed records of the three workflow tables, as the workflow APIs return them."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from syncstore.records import from_row

TERMINAL = ("completed", "failed", "cancelled")


class WorkflowRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    version: int = 1
    definition: dict[str, Any] = {}
    description: str = ""
    tags: list[str] = []
    config: dict[str, Any] = {}
    schedule: str | None = None
    is_active: bool = True
    created_by: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


class ExecutionRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    workflow_id: str
    workflow_version: int
    status: str = "pending"
    requested_status: str | None = None
    input: Any = None
    output: Any = None
    state: dict[str, Any] = {}
    current_step: int = 0
    total_steps: int | None = None
    error: str | None = None
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    paused_at: dt.datetime | None = None
    triggered_by: str | None = None
    parent_execution_id: str | None = None
    lease_owner: str | None = None
    lease_expires_at: dt.datetime | None = None
    metadata: dict[str, Any] = {}
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


class SnapshotRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    execution_id: str
    step_number: int
    step_name: str | None = None
    kind: str
    state: Any = None
    variables: Any = None
    output: Any = None
    timestamp: dt.datetime
    duration_ms: float | None = None
    memory_bytes: int | None = None
    cpu_ms: float | None = None
    metadata: dict[str, Any] = {}


def workflow(row: dict[str, Any]) -> WorkflowRecord:
    return from_row(WorkflowRecord, "workflows", row)


def execution(row: dict[str, Any]) -> ExecutionRecord:
    return from_row(ExecutionRecord, "workflow_executions", row)


def snapshot(row: dict[str, Any]) -> SnapshotRecord:
    return from_row(SnapshotRecord, "execution_snapshots", row)
