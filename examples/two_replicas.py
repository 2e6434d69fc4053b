"""Two replicas, one offline, both edit the same task; they converge through a sync
server and the concurrent edit shows up as a conflict record.

Every step is a ``syncstore`` command in a process of its own, printed as it runs,
so this is also the walk-through to type by hand.

    .venv/bin/python examples/two_replicas.py
        starts a development server on a free port: on SYNCSTORE_DATABASE_URL if
        set, else on an embedded PostgreSQL in ./syncstore-data (slow the first time)
    .venv/bin/python examples/two_replicas.py --url ws://host:8765 --token TOKEN
        uses a server that is already running (the token is never printed)
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ENTRY = "from syncstore.cli.main import cli; cli(prog_name='syncstore')"


def syncstore(*args: str, env: dict[str, str], show: bool = True) -> str:
    """Run one syncstore command in a new process; print it and what it says."""
    if show:
        print(f"$ syncstore {' '.join(_quote(a) for a in args)}")
    done = subprocess.run([sys.executable, "-c", ENTRY, *args], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"syncstore {args[0]} failed: {done.stderr.strip()}")
    if show and done.stdout.strip():
        print("  " + done.stdout.strip().replace("\n", "\n  "))
    return done.stdout.strip()


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " \"'") else arg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = ["server", "run", "--dev", "--port", str(port), "--log-level", "warning"]
    where = "SYNCSTORE_DATABASE_URL" if env.get("SYNCSTORE_DATABASE_URL") else "an embedded PostgreSQL in ./syncstore-data"
    print(f"starting a development sync server on port {port}, on {where}")
    server = subprocess.Popen([sys.executable, "-c", ENTRY, *args], env=env)
    deadline = time.monotonic() + 180  # the embedded PostgreSQL unpacks itself the first time
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the server did not start (see its messages above)")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server, f"ws://127.0.0.1:{port}"
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not become ready in time")


def walk_through(folder: Path, env: dict[str, str]) -> None:
    a = ["--db", str(folder / "laptop.db")]
    b = ["--db", str(folder / "desktop.db")]

    print("\n# 1. The laptop creates a task and syncs; the desktop syncs and has it too.")
    task_id = syncstore(*a, "tasks", "add", "Write the quarterly report", env=env)
    syncstore(*a, "sync", env=env)
    syncstore(*b, "sync", env=env)

    print("\n# 2. The desktop goes offline and retitles the task; its edit waits in its change log.")
    syncstore(*b, "tasks", "update", task_id, "--title", "Quarterly report (desktop draft)", env=env)
    syncstore(*b, "sync", "status", env=env)

    print("\n# 3. Meanwhile the laptop retitles the same task and syncs.")
    syncstore(*a, "tasks", "update", task_id, "--title", "Quarterly report (laptop draft)", env=env)
    syncstore(*a, "sync", env=env)

    print("\n# 4. The desktop comes back online; both sync. Last write wins, on both.")
    syncstore(*b, "sync", env=env)
    syncstore(*a, "sync", env=env)
    syncstore(*b, "sync", env=env)
    for name, db in (("laptop", a), ("desktop", b)):
        title = json.loads(syncstore(*db, "tasks", "show", task_id, "--json", env=env, show=False))["task"]["title"]
        print(f"  {name:8} sees: {title}")

    print("\n# 5. The edit that lost is not gone: it is a conflict record on both replicas.")
    syncstore(*b, "conflicts", "list", "--table", "tasks", env=env)
    records = json.loads(syncstore(*b, "conflicts", "list", "--json", env=env, show=False))
    title_conflict = next(c for c in records if c["column"] == "title")
    syncstore(*b, "conflicts", "show", title_conflict["id"], env=env)

    print("\n# 6. Someone settles it; the resolution is a new write, so it syncs like any edit.")
    syncstore(*b, "conflicts", "resolve", title_conflict["id"], "--value", '"Quarterly report (final)"', env=env)
    syncstore(*b, "sync", env=env)
    syncstore(*a, "sync", env=env)
    title = json.loads(syncstore(*a, "tasks", "show", task_id, "--json", env=env, show=False))["task"]["title"]
    print(f"  laptop sees: {title}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running sync server (ws://host:port); default: start one")
    parser.add_argument("--token", default=os.environ.get("SYNCSTORE_TOKEN"), help="token for --url (or SYNCSTORE_TOKEN)")
    parser.add_argument("--keep", metavar="FOLDER", help="keep the two replica files in FOLDER")
    args = parser.parse_args()

    env = dict(os.environ)
    server = None
    if args.url:
        if not args.token:
            parser.error("--url needs --token (or SYNCSTORE_TOKEN)")
        url, token = args.url, args.token
    else:
        server, url = start_server(env)
        token = syncstore("server", "token", "--dev", "--tenant", "demo", "--ttl", "1h", env=env, show=False)
    env.update(SYNCSTORE_URL=url, SYNCSTORE_TOKEN=token)  # the commands read them; nobody prints them
    try:
        if args.keep:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
            walk_through(Path(args.keep), env)
        else:
            with tempfile.TemporaryDirectory() as folder:
                walk_through(Path(folder), env)
    finally:
        if server is not None:
            server.terminate()  # SIGTERM: the server drains and stops its PostgreSQL
            server.wait(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
