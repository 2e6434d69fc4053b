"""Live sync latency: a write on replica A visible on replica B through the server,
with 1, 100 and 1,000 connected subscribers; and server memory per connected client.

The set-up is the real thing on one machine: ``syncstore server run`` as its own
process on a fresh database of the local PostgreSQL; replicas A and B (SQLite
files) syncing in the background in this process; the other subscribers are
lightweight protocol sessions over websockets (Hello, Subscribe to ``tasks``,
then read every frame), all of the same tenant, run by a second process, so
each write fans out to every one of them. Subscribers count B: "100
subscribers" is B and 99 sessions.

One sample: A updates a task (a local commit, which wakes A's sync thread);
the time until B's change listener hears of the new value. Samples are taken
one at a time with a short random pause between them.

The anchor, in the same run: the round trip of a small message through a bare
websockets echo server on the same machine (what no sync server can beat).
Server memory per client: the server process's RSS before and after the
subscribers connect and catch up, divided by their number.

    .venv/bin/python benchmarks/sync_latency.py [--database-url URL] [--levels 1,100,1000] [--samples 200]

Targets (on loopback, 1,000 subscribers): p50 <= 20 ms, p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import syncstore
from syncstore.core import protocol as p

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
TENANT = "latency"
SECRET = "sync-latency-benchmark-secret-" + "x" * 24
SYNCSTORE = str(Path(sys.executable).with_name("syncstore"))


# --- the subscribers' process -----------------------------------------------------------


async def _subscriber(url: str, token: str, ready: asyncio.Event, received: list[int]) -> None:
    from websockets.asyncio.client import connect

    async with connect(url, max_size=None, compression=None, open_timeout=60) as ws:
        # As the sync client does: live changes come as one Changes frame carrying the cursor.
        await ws.send(p.encode(p.Hello(token=token, site=os.urandom(16), changes_cursor=True)))
        welcome = p.decode(await ws.recv())
        assert isinstance(welcome, p.Welcome), welcome
        await ws.send(p.encode(p.Subscribe(shapes=[p.Shape("tasks")])))
        async for frame in ws:
            received[0] += 1
            if len(frame) > 64:  # Changes: a lightweight subscriber takes them unread
                continue
            message = p.decode(frame)
            if isinstance(message, p.UpToDate):
                ready.set()
            elif isinstance(message, p.Ping):
                await ws.send(p.encode(p.Pong(nonce=message.nonce)))


async def _subscribers(url: str, token: str, count: int) -> None:
    received = [0]
    readies = [asyncio.Event() for _ in range(count)]
    tasks = []
    for start in range(0, count, 50):  # connect in waves: no handshake storm
        for ready in readies[start : start + 50]:
            tasks.append(asyncio.create_task(_subscriber(url, token, ready, received)))
        await asyncio.gather(*(r.wait() for r in readies[start : start + 50]))
    print("ready", flush=True)
    # Run until the parent closes our stdin.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    print(f"received {received[0]} frames", flush=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def worker_main(url: str, token: str, count: int) -> None:
    asyncio.run(_subscribers(url, token, count))


# --- the anchor: a bare websockets echo ------------------------------------------------------

ECHO_SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve
async def echo(ws):
    async for message in ws:
        await ws.send(message)
async def main():
    async with serve(echo, "127.0.0.1", 0, compression=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
"""


def echo_round_trips(samples: int) -> list[float]:
    from websockets.sync.client import connect

    proc = subprocess.Popen([sys.executable, "-c", ECHO_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())  # type: ignore[union-attr]
        times = []
        payload = p.encode(p.Changes(txs=[]))
        with connect(f"ws://127.0.0.1:{port}", compression=None) as ws:
            for i in range(samples + 20):
                started = time.perf_counter()
                ws.send(payload)
                ws.recv()
                if i >= 20:  # warmed up
                    times.append(time.perf_counter() - started)
                time.sleep(random.uniform(0.002, 0.01))
        return times
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(10)


# --- the sync server -------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_s(pid: int) -> float:
    """User and system CPU time of a process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(url: str, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "SYNCSTORE_SECRET": SECRET}
    proc = subprocess.Popen(
        [SYNCSTORE, "server", "run", "--database-url", url, "--port", str(port), "--max-connections", "5000",
         "--log-level", "warning"],
        env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    import urllib.request

    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited: {proc.stderr.read()}")  # type: ignore[union-attr]
            time.sleep(0.2)
    raise RuntimeError("the server did not become ready")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- measuring ---------------------------------------------------------------------------------


class Arrivals:
    """B's change listener: when did B commit the value we wait for."""

    def __init__(self, store: syncstore.Store, row_id: str):
        self.row_id = row_id
        self.event = threading.Event()
        self.at = 0.0
        store.subscribe("tasks", self._heard)

    def _heard(self, changes) -> None:
        for change in changes:
            if change.id == self.row_id and change.origin == "remote":
                self.at = time.perf_counter()
                self.event.set()


def measure(a: syncstore.Store, arrivals: Arrivals, samples: int) -> list[float]:
    times = []
    for i in range(samples + 10):
        arrivals.event.clear()
        started = time.perf_counter()
        a.tasks.update(arrivals.row_id, title=f"version {i} {uuid.uuid4().hex[:6]}")
        if not arrivals.event.wait(30):
            raise RuntimeError("a write never reached replica B")
        if i >= 10:  # warmed up
            times.append(arrivals.at - started)
        time.sleep(random.uniform(0.01, 0.03))
    return times


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_synced(handle, what: str) -> None:
    if not handle.wait_synced(60):
        raise RuntimeError(f"{what} did not sync: {handle.status()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="a PostgreSQL database to use (its syncstore schema gets migrated)")
    parser.add_argument("--levels", default="1,100,1000", help="numbers of subscribers (B included)")
    parser.add_argument("--samples", type=int, default=200, help="writes measured per level")
    parser.add_argument("--worker", nargs=3, metavar=("URL", "TOKEN", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker[0], args.worker[1], int(args.worker[2]))
        return

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # the server and workers inherit it
    levels = [int(n) for n in args.levels.split(",")]

    made = None
    url = args.database_url
    if url is None:
        made = f"syncstore_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{made}"')
        url = make_conninfo(**{**conninfo_to_dict(ADMIN_URL), "dbname": made})
    from syncstore_server.auth import Secret, mint_token

    token = mint_token(Secret(SECRET, source="benchmark"), tenant=TENANT)
    folder = tempfile.TemporaryDirectory(prefix="syncstore-latency-")
    port = free_port()
    server = start_server(url, port)
    ws_url = f"ws://127.0.0.1:{port}"
    try:
        echo = echo_round_trips(args.samples)
        echo_p50, echo_p99 = percentile(echo, 0.5), percentile(echo, 0.99)
        print(f"anchor: bare websockets echo round trip p50 {echo_p50 * 1e3:.2f} ms, p99 {echo_p99 * 1e3:.2f} ms")

        a = syncstore.open(os.path.join(folder.name, "a.db"))
        b = syncstore.open(os.path.join(folder.name, "b.db"))
        options = dict(poll_interval=1.0, backoff_base=0.1, backoff_max=1.0)
        a_sync = a.start_sync(ws_url, token=token, **options)
        b_sync = b.start_sync(ws_url, token=token, **options)
        task = a.tasks.create("the task both replicas watch", repository="acme/app")
        wait_synced(a_sync, "replica A")
        deadline = time.monotonic() + 30
        while b.tasks.find(task.id) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        arrivals = Arrivals(b, task.id)

        results = []
        for level in levels:
            extra = level - 1
            worker = None
            before = rss_mb(server.pid)
            if extra > 0:
                worker = subprocess.Popen(
                    [sys.executable, __file__, "--worker", ws_url, token, str(extra)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                )  # fmt: skip
                line = worker.stdout.readline()  # type: ignore[union-attr]
                if line.strip() != "ready":
                    raise RuntimeError(f"the subscribers did not connect: {line!r}")
            time.sleep(1)  # let the server settle after the connection wave
            after = rss_mb(server.pid)
            cpu = time.process_time()
            server_cpu = cpu_s(server.pid)
            times = measure(a, arrivals, args.samples)
            server_cpu = (cpu_s(server.pid) - server_cpu) / (args.samples + 10)
            p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
            per_client_kb = (after - before) * 1024 / extra if extra else 0.0
            results.append((level, p50, p99, statistics.mean(times), per_client_kb, after))
            print(f"{level:>5} subscribers: p50 {p50 * 1e3:6.2f} ms  p99 {p99 * 1e3:6.2f} ms  "
                  f"mean {statistics.mean(times) * 1e3:6.2f} ms  "
                  f"(x{p50 / echo_p50:.0f} / x{p99 / echo_p99:.0f} the echo)  "
                  f"server RSS {after:.0f} MB" + (f", {per_client_kb:.0f} KB per connected client" if extra else "")
                  + f"  [CPU per write: server {server_cpu * 1e3:.1f} ms, this process "
                  f"{1e3 * (time.process_time() - cpu) / len(times):.1f} ms]",
                  flush=True)  # fmt: skip
            if worker is not None:
                worker.stdin.close()  # type: ignore[union-attr]
                print(f"      subscribers' process: {worker.stdout.read().strip()}")  # type: ignore[union-attr]
                worker.wait(60)
                time.sleep(1)

        level, p50, p99, _, _, _ = results[-1]
        met = p50 <= 0.020 and p99 <= 0.100
        print(f"target at {level} subscribers (p50 <= 20 ms, p99 <= 100 ms): {'met' if met else 'NOT met'}")
        a_sync.stop()
        b_sync.stop()
        a.close()
        b.close()
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        folder.cleanup()
        if made is not None:
            with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{made}" WITH (FORCE)')


if __name__ == "__main__":
    main()
