"""Helpers for the server tests: tokens, row changes, a raw protocol client's steps, a server process."""

from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
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


# --- a server in its own process ------------------------------------------------------

SYNCSTORE = str(Path(sys.executable).with_name("syncstore"))
_LISTENING = re.compile(r"listening on [^:]+:(\d+)")


class ServerProcess:
    """``syncstore server run`` as a real process; its log lines are collected."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, dev: bool = False):
        environ = {**os.environ, "SYNCSTORE_SECRET": SECRET.reveal().decode(), **(env or {})}
        # --dev runs `syncstore server` with no subcommand: the daemon is the default.
        command = [SYNCSTORE, "server", "--dev"] if dev else [SYNCSTORE, "server", "run"]
        self.proc = subprocess.Popen(
            [*command, "--port", "0", *args],
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []  # the lines wait_for has looked at
        self.output: list[str] = []  # every line, as it comes
        self._ended = threading.Event()
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.port = int(self.wait_for(_LISTENING)[1])

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.output.append(line)
            self._queue.put(line)
        self._queue.put(None)
        self._ended.set()

    def all_output(self, timeout: float = 30) -> str:
        """Everything the process logged, once it has exited."""
        self.proc.wait(timeout)
        self._ended.wait(timeout)
        return "".join(self.output)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 60) -> re.Match[str]:
        """The first log line (from now on) matching ``pattern``."""
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"the server never logged {pattern.pattern!r}:\n{''.join(self.lines)}") from None
            if line is None:
                raise AssertionError(f"the server exited ({self.proc.wait()}):\n{''.join(self.lines)}")
            self.lines.append(line)
            found = pattern.search(line)
            if found:
                return found

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()


def whole_insert(seq: int, row_id: str, hlc: int, table: str = "tasks", **values: Any) -> p.LocalChange:
    """An insert giving every column, defaults filled, as a replica's insert does."""
    row = {c.name: c.default for c in schema.TABLES[table].columns}
    row.update(values, id=row_id)
    if table == "tasks" and row["title"] is None:
        row["title"] = "a task"
    return p.LocalChange(seq, table, row_id, hlc, {**row, DELETED: 0}, None)
