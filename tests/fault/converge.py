"""Heal, wait until quiet, compare every replica with PostgreSQL.

PostgreSQL is read with plain SQL in canonical form (``tests/pg_rows.py``),
so the check does not lean on the server's own reader. A replica converged
when every synced table holds the same live rows, value for value, and no
deleted id of its own that PostgreSQL holds live (a replica bootstrapped from
a snapshot may know fewer tombstones).
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import psycopg

from syncstore import schema
from syncstore.sync import SyncHandle

from pg_rows import tenant_rows

State = dict[str, tuple[dict[str, dict[str, Any]], set[str]]]  # table: (live rows by id, deleted ids)


def pg_state(database_url: str, tenant: str) -> State:
    out: State = {}
    with psycopg.connect(database_url) as conn:
        for tbl in schema.TABLES.values():
            live: dict[str, dict[str, Any]] = {}
            dead: set[str] = set()
            for row_id, deleted, values in tenant_rows(conn, tbl, tenant):
                if deleted:
                    dead.add(row_id)
                else:
                    live[row_id] = values
            out[tbl.name] = (live, dead)
    return out


def replica_state(store: Any) -> State:
    out: State = {}
    for tbl in schema.TABLES.values():
        names = tbl.column_names
        live = {row["id"]: {n: row[n] for n in names[1:]} for row in store.query(f"SELECT * FROM {tbl.name}")}
        dead = {row["pk"] for row in store.query("SELECT pk FROM _ss_tombstones WHERE tbl = ?", (tbl.name,))}
        out[tbl.name] = (live, dead)
    return out


def log_position(database_url: str, tenant: str) -> tuple[int, int]:
    """The tenant's newest log position, and direct writes not yet published."""
    with psycopg.connect(database_url) as conn:
        newest = conn.execute(
            "SELECT coalesce(max(seq), 0) FROM syncstore.change_log WHERE tenant = %s", (tenant,)
        ).fetchone()[0]
        queued = conn.execute("SELECT count(*) FROM syncstore.direct_writes WHERE tenant = %s", (tenant,)).fetchone()[0]
    return newest, queued


def wait_quiet(database_url: str, tenant: str, handles: Iterable[SyncHandle], *, timeout: float = 60) -> None:
    """Until every handle has pushed everything and applied the whole log, twice in a row."""
    handles = list(handles)
    deadline = time.monotonic() + timeout
    calm = 0
    while calm < 2:
        for handle in handles:
            assert handle.running, f"a sync stopped for good: {handle.error}"
            handle.wait_synced(max(0.1, deadline - time.monotonic()))
        newest, queued = log_position(database_url, tenant)
        statuses = [handle.status() for handle in handles]
        if queued == 0 and all(s.pending_changes == 0 and s.cursor >= newest for s in statuses):
            calm += 1
        else:
            calm = 0
        if time.monotonic() > deadline:
            raise AssertionError(
                f"not quiet after {timeout}s: log at {newest}, {queued} direct writes queued, "
                f"replicas at {[(s.cursor, s.pending_changes, s.last_error) for s in statuses]}"
            )
        time.sleep(0.2)


def assert_converged(database_url: str, tenant: str, stores: Iterable[Any]) -> State:
    """Every replica holds exactly what PostgreSQL holds; returns that state."""
    expected = pg_state(database_url, tenant)
    for store in stores:
        found = replica_state(store)
        for table, (live, dead) in expected.items():
            got_live, got_dead = found[table]
            if got_live != live:
                missing = sorted(set(live) - set(got_live))[:5]
                extra = sorted(set(got_live) - set(live))[:5]
                differ = sorted(k for k in set(live) & set(got_live) if live[k] != got_live[k])[:3]
                raise AssertionError(
                    f"{store.path}: {table} differs from PostgreSQL: missing {missing}, extra {extra}, "
                    f"different {[(k, live[k], got_live[k]) for k in differ]}"
                )
            buried = sorted(got_dead & set(live))[:5]
            assert not buried, f"{store.path}: {table} keeps tombstones of live rows {buried}"
    return expected


def wait_until(predicate: Any, *, timeout: float = 30, what: str = "the condition") -> None:
    """Poll ``predicate()`` until true; fail after ``timeout`` seconds (a bound, not a measurement)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.02)
