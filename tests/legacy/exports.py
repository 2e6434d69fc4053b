"""Exports to import, built from parts, and a way to compare whole replicas."""

from __future__ import annotations

import json
import pathlib
import uuid
from typing import Any

SAMPLE = pathlib.Path(__file__).parent / "data" / "legacy-export-sample.json"
SAMPLE_TOKENS = ("gho_EXAMPLEtoken000000000000000000000", "gho_EXAMPLEtoken111111111111111111111")
VALID_SAMPLE_TASKS = {
    "9531985d-5d9d-49f8-9818-e811892f902b": ("DONE", "completed", 5),
    "36f675cc-81e7-4ef5-a8e2-5d940ed90475": ("PAUSED", "paused", 1),
    "6b0d549b-6f03-475a-9600-a35a099950d8": ("MERGED", "merged", 4),
    "8d116ece-1738-47d9-bd9c-172411e20b8f": ("CANCELLED", "cancelled", 0),
    "a170b338-3926-4059-b28c-105d1fb17c23": ("IN_PROGRESS", "in_progress", 1),
}


def make_task(**fields: Any) -> dict[str, Any]:
    """A valid legacy task; ``fields`` override or add (None removes a field)."""
    item: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "title": "Fix the flaky test",
        "description": "",
        "messages": [
            {"role": "user", "type": "message", "data": {"text": "and add a test", "id": str(uuid.uuid4())}},
            {"role": "assistant", "type": "message", "data": {"type": "output_text", "text": "Done.", "annotations": []}},
        ],
        "status": "DONE",
        "branch": "main",
        "sessionId": "ibx1",
        "repository": "octo/app",
        "createdAt": "2025-07-17T10:00:00.000Z",
        "updatedAt": "2025-07-17T10:05:00.000Z",
        "isArchived": False,
        "mode": "code",
        "hasChanges": True,
    }
    item.update(fields)
    return {k: v for k, v in item.items() if v is not None}


def make_environment(**fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "name": "App",
        "description": "",
        "githubOrganization": "octo",
        "githubToken": "gho_" + uuid.uuid4().hex + "abcd",
        "githubRepository": "octo/app",
        "createdAt": "2025-07-17T09:00:00.000Z",
        "updatedAt": "2025-07-17T09:30:00.000Z",
    }
    item.update(fields)
    return {k: v for k, v in item.items() if v is not None}


def make_export(tasks: list[dict[str, Any]] = (), environments: list[dict[str, Any]] = (), **other: Any) -> dict[str, Any]:
    """The export as the old app wrote it: store values are JSON strings."""
    out = {
        "task-store": json.dumps({"state": {"tasks": list(tasks)}, "version": 0}),
        "environments": json.dumps({"state": {"environments": list(environments)}, "version": 0}),
    }
    out.update(other)
    return out


def snapshot(store) -> dict[str, list[tuple]]:
    """Every row of every table in the file, synced or not, in a stable order."""
    conn = store.connection
    names = [r[0] for r in conn.execute("select name from sqlite_schema where type = 'table' and name not like 'sqlite_%'")]
    return {name: sorted(map(tuple, conn.execute(f'select * from "{name}"')), key=repr) for name in sorted(names)}
