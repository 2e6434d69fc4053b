"""Peers of two schema versions, each real syncstore code in a process of its own.

Both versions are test-only versions made from the current schema (see
``tests/schema_versions.py``): "old" lacks a column and a table that "new"
marks as added in the next version.

A process takes its version before anything reads the schema: a finder on
``sys.meta_path`` wraps the import of ``syncstore.schema`` and rewrites its
``TABLES`` and ``SCHEMA_VERSION`` as soon as the module has run, so every
module built from it (the replica's statements, the server's checks and SQL)
sees one version only. (The databases still hold the column and the table,
made by the shipped migrations: an old peer never names them.)

Run as a script::

    python schema_peers.py old|new server <syncstore server run options>
    python schema_peers.py old|new client <replica file>

A client reads one JSON command per line on stdin and answers one JSON line
(see :func:`_serve`); :class:`Client` and :class:`Server` drive them from a test.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent.parent))  # the tests folder, when run as a script

import schema_versions  # noqa: E402
from schema_versions import COLUMN, TABLE  # noqa: E402,F401

VERSIONS = ("old", "new")
_LISTENING = re.compile(r"listening on [^:]+:(\d+)")


# --- the versions ------------------------------------------------------------------


def _rewrite(module: Any, which: str) -> None:
    """Make ``module`` (syncstore.schema, just run) the ``which`` version."""
    tables, version = schema_versions.make(module.TABLES, module.SCHEMA_VERSION, which)
    module._check_versions(tables, version)
    module.TABLES = tables
    module.SCHEMA_VERSION = version


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: Any, which: str):
        self.inner = inner
        self.which = which

    def create_module(self, spec: Any) -> Any:
        return self.inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.inner.exec_module(module)
        _rewrite(module, self.which)


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, which: str):
        self.which = which

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "syncstore.schema":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None:
            spec.loader = _Loader(spec.loader, self.which)
        return spec


def install(which: str) -> None:
    """Make this process a peer of version ``which`` (before syncstore is imported)."""
    assert which in VERSIONS and "syncstore.schema" not in sys.modules
    sys.meta_path.insert(0, _Finder(which))


# --- a client process ---------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    return value.hex() if isinstance(value, bytes) else value


def _serve(path: str) -> None:
    import msgspec

    import syncstore
    from syncstore import schema
    from syncstore.errors import SyncstoreError

    store = syncstore.open(path)
    out = sys.stdout
    for line in sys.stdin:
        command = json.loads(line)
        op = command.pop("op")
        try:
            if op == "insert":
                answer: Any = store.insert(command["table"], command["values"])
            elif op == "update":
                answer = store.update(command["table"], command["id"], command["values"])
            elif op == "delete":
                answer = store.delete(command["table"], command["id"])
            elif op == "sync":
                answer = msgspec.to_builtins(store.sync(command["url"], token=command["token"], timeout=60))
            elif op == "status":
                answer = msgspec.to_builtins(store.sync_status())
            elif op == "cells":
                # Every row this peer's version knows, live or deleted: {id: {column: [value, hlc, site]}}.
                tbl = schema.table(command["table"])
                answer = {}
                for (row_id,) in store.connection.execute(f"select id from {tbl.name}"):
                    cells = store.cells(tbl.name, row_id)
                    answer[row_id] = {n: [_jsonable(v) for v in c] for n, c in cells.items()}
                for (row_id,) in store.connection.execute("select pk from _ss_tombstones where tbl = ?", (tbl.name,)):
                    answer[row_id] = {"_deleted": [1]}
            elif op == "schema":
                answer = {"version": schema.SCHEMA_VERSION, "tables": {n: t.column_names for n, t in schema.TABLES.items()}}
            elif op == "quit":
                break
            else:
                raise ValueError(f"no op {op!r}")
            reply = {"ok": answer}
        except SyncstoreError as exc:
            reply = {"error": str(exc), "type": type(exc).__name__, "code": getattr(exc, "code", None)}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    store.close()


class PeerError(Exception):
    pass


class Client:
    """A client process of one version over one replica file."""

    def __init__(self, which: str, path: str):
        self.which = which
        self.path = path
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), which, "client", path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def call(self, op: str, **args: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise PeerError(f"the {self.which} client exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
        reply = json.loads(line)
        if "error" in reply:
            raise PeerError(f"{reply['type']}({reply['code']}): {reply['error']}")
        return reply["ok"]

    def insert(self, table: str, **values: Any) -> str:
        return self.call("insert", table=table, values=values)

    def update(self, table: str, row_id: str, **values: Any) -> None:
        self.call("update", table=table, id=row_id, values=values)

    def sync(self, server: Server, tenant: str) -> dict[str, Any]:
        return self.call("sync", url=server.url, token=server.token(tenant))

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("quit")
            except (PeerError, BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# --- a server process -------------------------------------------------------------


class Server:
    """``syncstore server run`` of one version, on a free port."""

    SECRET = "schema-peers-secret-" + "v" * 32

    def __init__(self, which: str, database_url: str):
        self.which = which
        self.database_url = database_url
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def token(self, tenant: str) -> str:
        from syncstore_server.auth import Secret, mint_token

        return mint_token(Secret(self.SECRET, source="tests"), tenant=tenant)

    def start(self, timeout: float = 60) -> Server:
        env = {**os.environ, "SYNCSTORE_SECRET": self.SECRET}
        command = [sys.executable, str(HERE), self.which, "server", "--database-url", self.database_url, "--port", "0"]
        self.proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                self.output.append(line)
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        while True:
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                raise PeerError(f"the {self.which} server never listened:\n{''.join(self.output)}") from None
            if line is None:
                raise PeerError(f"the {self.which} server exited:\n{''.join(self.output)}")
            found = _LISTENING.search(line)
            if found:
                self.port = int(found.group(1))
                return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


if __name__ == "__main__":
    which, role, *rest = sys.argv[1:]
    install(which)
    if role == "server":
        from syncstore.cli.main import cli

        cli(["server", "run", *rest], prog_name="syncstore")
    else:
        _serve(rest[0])
