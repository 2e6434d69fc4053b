"""Helpers for the server tests: tokens, row changes, a raw protocol client's steps."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg

from syncstore import schema
from syncstore.core import protocol as p
from syncstore.core.hlc import pack, wall_ms
from syncstore.core.merge import DELETED

from syncstore_server import auth

SECRET = auth.Secret("server-tests-secret-" + "s" * 32, source="tests")


def token(tenant: str, **kw: Any) -> str:
    return auth.mint_token(SECRET, tenant=tenant, **kw)


def site(n: int) -> bytes:
    return bytes([n]) * 16


def stamp(offset: int = 0) -> int:
    return pack(wall_ms(), 0) + offset


def new_id() -> str:
    return str(uuid.uuid4())


def insert(seq: int, row_id: str, hlc: int, table: str = "tasks", **values: Any) -> p.LocalChange:
    if table == "tasks":
        values.setdefault("title", "a task")
    return p.LocalChange(seq, table, row_id, hlc, {"id": row_id, **values, DELETED: 0}, None)


def update(seq: int, row_id: str, hlc: int, seen: dict[str, tuple[int, bytes]] | None, **values: Any) -> p.LocalChange:
    return p.LocalChange(seq, "tasks", row_id, hlc, values, seen)


async def recv(ws: Any, timeout: float = 10) -> p.Message:
    return p.decode(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(ws: Any, kind: type, timeout: float = 10) -> tuple[p.Message, list[p.Message]]:
    """Read messages until one of ``kind``; return it and those before it."""
    before = []
    while True:
        message = await recv(ws, timeout)
        if isinstance(message, kind):
            return message, before
        before.append(message)


async def hello(ws: Any, tok: str, who: bytes, **kw: Any) -> p.Message:
    await ws.send(p.encode(p.Hello(token=tok, site=who, **kw)))
    return await recv(ws)


def tenant_rows(url: str, tenant: str, table: str = "tasks") -> list[dict[str, Any]]:
    schema.table(table)
    with psycopg.connect(url) as conn:
        cur = conn.execute(f"SELECT * FROM syncstore.{table} WHERE tenant = %s ORDER BY id", (tenant,))
        names = [d.name for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def tenant_log(url: str, tenant: str) -> list[tuple[int, bytes, int]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT seq, origin_site, origin_tx FROM syncstore.change_log WHERE tenant = %s ORDER BY seq", (tenant,)
        ).fetchall()
