"""What an operator asks of a server database, one function per question.

Each function takes a database URL and returns plain values; the CLI
(``syncstore server ...``) calls exactly one of them per command.
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg

from syncstore.errors import SyncError

from syncstore_server import conflicts, migrate
from syncstore_server.store import SCHEMA, open_store
from syncstore_server.tables import VECTOR_COLUMNS_QUERY


def _connect(database_url: str) -> psycopg.Connection:
    try:
        return psycopg.connect(database_url, connect_timeout=10, autocommit=True)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise SyncError(f"cannot reach the database: {first}") from None


def apply_migrations(database_url: str, *, target: int | None = None) -> dict[str, Any]:
    """Migrate up to ``target`` (all by default), or down to it when it is lower."""
    with _connect(database_url) as conn:
        before = migrate.status(conn).current
        if target is not None and target < before:
            changed = migrate.rollback(conn, target=target)
            direction = "down"
        else:
            changed = migrate.migrate(conn, target=target)
            direction = "up"
        after = migrate.status(conn).current
    return {
        "from": before,
        "to": after,
        "direction": direction,
        "steps": [f"{m.version:04d}_{m.name}" for m in changed],
    }


def status(database_url: str) -> dict[str, Any]:
    """The schema version and what the database holds."""
    with _connect(database_url) as conn:
        state = migrate.status(conn)
        out: dict[str, Any] = {
            "schema_version": state.current,
            "latest_version": state.latest,
            "pending": [f"{m.version:04d}_{m.name}" for m in state.pending],
        }
        if state.current == 0:
            return out
        row = conn.execute(
            f"""SELECT
                (SELECT coalesce(max(seq), 0) FROM {SCHEMA}.change_log),
                (SELECT count(*) FROM {SCHEMA}.change_log),
                (SELECT count(DISTINCT tenant) FROM {SCHEMA}.site_acks),
                (SELECT count(*) FROM {SCHEMA}.site_acks),
                (SELECT count(*) FROM {SCHEMA}.conflicts WHERE resolved_at IS NULL),
                (SELECT count(*) FROM {SCHEMA}.rejections)"""
        ).fetchone()
        assert row is not None
        vectors = conn.execute(VECTOR_COLUMNS_QUERY).fetchall()
    out.update(
        log_position=row[0],
        log_entries=row[1],
        tenants=row[2],
        sites=row[3],
        unresolved_conflicts=row[4],
        rejected_transactions=row[5],
        pgvector=bool(vectors),
    )
    return out


def rejections(database_url: str, *, tenant: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Pushed transactions the server refused for good, newest first."""
    clause = "WHERE tenant = %s" if tenant is not None else ""
    params: tuple[Any, ...] = (tenant, limit) if tenant is not None else (limit,)
    with _connect(database_url) as conn:
        rows = conn.execute(
            f"SELECT id, tenant, site, tx, first_seq, last_seq, code, message, created_at "
            f"FROM {SCHEMA}.rejections {clause} ORDER BY id DESC LIMIT %s",
            params,
        ).fetchall()
    names = ("id", "tenant", "site", "tx", "first_seq", "last_seq", "code", "message", "created_at")
    return [dict(zip(names, row)) for row in rows]


def _with_store(database_url: str, work: Any) -> Any:
    async def main() -> Any:
        try:
            async with open_store(database_url) as store:
                return await work(store)
        except psycopg.OperationalError as exc:
            raise SyncError(f"cannot reach the database ({type(exc).__name__})") from None

    return asyncio.run(main())


def list_conflicts(database_url: str, **filters: Any) -> list[conflicts.ConflictRow]:
    return _with_store(database_url, lambda store: conflicts.list_conflicts(store, **filters))


def show_conflict(database_url: str, conflict_id: str) -> conflicts.ConflictRow:
    return _with_store(database_url, lambda store: conflicts.get_conflict(store, conflict_id))


def resolve_conflict(database_url: str, conflict_id: str, **how: Any) -> conflicts.ConflictRow:
    return _with_store(database_url, lambda store: conflicts.resolve_conflict(store, conflict_id, **how))


def compact(database_url: str, *, retention_s: float, tenant: str | None = None) -> list[dict[str, Any]]:
    """Compact the change log (one tenant's, or every tenant's): see
    :mod:`syncstore_server.compaction`."""
    from syncstore_server import compaction

    _connect(database_url).close()  # one clear error when the database is away

    async def run() -> list[dict[str, Any]]:
        async with open_store(database_url) as store:
            return [r.to_dict() for r in await compaction.compact(store, tenant=tenant, retention_s=retention_s)]

    return asyncio.run(run())
