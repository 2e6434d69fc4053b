"""Two test-only versions of the synced schema, made from the current one.

- "old": the current tables minus one column (:data:`COLUMN`) and one table
  (:data:`TABLE`), at the current ``SCHEMA_VERSION``;
- "new": the current tables, with that column and that table marked as added
  in the next version, at ``SCHEMA_VERSION + 1``.

Tests in one process use "new" (same tables and columns as the current
schema, so everything built from it at import still fits); peers of either
version run in processes of their own (``tests/sync/schema_peers.py``).
"""

from __future__ import annotations

from typing import Any

import msgspec

COLUMN = ("tasks", "status_message")  # in "new" only (its default is NULL, as the databases')
TABLE = "workflows"  # in "new" only


def make(tables: dict[str, Any], base: int, which: str) -> tuple[dict[str, Any], int]:
    """The ``which`` version ("old" or "new") of ``tables`` at ``base``: (tables, version)."""
    replace = msgspec.structs.replace
    table, column = COLUMN
    out = dict(tables)
    if which == "old":
        out[table] = replace(out[table], columns=tuple(c for c in out[table].columns if c.name != column))
        del out[TABLE]
        return out, base
    version = base + 1
    out[table] = replace(
        out[table], columns=tuple(replace(c, since=version) if c.name == column else c for c in out[table].columns)
    )
    out[TABLE] = replace(out[TABLE], since=version, columns=tuple(replace(c, since=version) for c in out[TABLE].columns))
    return out, version


def use_new(monkeypatch: Any) -> int:
    """Make this process's schema the "new" version (for one test); returns the old version."""
    from syncstore import schema

    tables, version = make(schema.TABLES, schema.SCHEMA_VERSION, "new")
    schema._check_versions(tables, version)
    monkeypatch.setattr(schema, "TABLES", tables)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", version)
    return version - 1
