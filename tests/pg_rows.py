"""A tenant's rows as PostgreSQL holds them, read with plain SQL in the
canonical form a replica holds (ISO timestamps, booleans as 0/1, JSON as its
canonical text), so the tests' comparisons do not lean on the server's own reader."""

from __future__ import annotations

import json
from typing import Any, Iterator

import psycopg

from syncstore import schema

_TIMESTAMP = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'


def _select(tbl: schema.Table) -> str:
    exprs = []
    for col in tbl.columns[1:]:
        if col.type == "boolean":
            exprs.append(f"{col.name}::int")
        elif col.type == "timestamp":
            exprs.append(f"to_char({col.name} AT TIME ZONE 'UTC', '{_TIMESTAMP}')")
        elif col.type == "json":
            exprs.append(f"{col.name}::text")
        else:
            exprs.append(col.name)
    return f"SELECT id, _deleted, {', '.join(exprs)} FROM syncstore.{tbl.name} WHERE tenant = %s"


def tenant_rows(conn: psycopg.Connection, tbl: schema.Table, tenant: str) -> Iterator[tuple[str, bool, dict[str, Any]]]:
    """Every row of the tenant in ``tbl``, deleted or not: (id, deleted, values by column)."""
    for record in conn.execute(_select(tbl), (tenant,)):
        values = {}
        for col, value in zip(tbl.columns[1:], record[2:]):
            if col.type == "json" and value is not None:
                value = schema.encode_json(json.loads(value))
            values[col.name] = value
        yield record[0], bool(record[1]), values
