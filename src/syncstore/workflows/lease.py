"""Leases: one owner runs an execution at a time.

An execution's lease is two synced columns, ``lease_owner`` and
``lease_expires_at``. A process takes the lease inside a ``BEGIN IMMEDIATE``
transaction that first reads it, so two processes on one replica file are
serialised by SQLite and can never both win. The owner renews the lease while
it runs (at step boundaries, and from a heartbeat thread during long steps)
and checks it again in every transaction that records a step, so an owner
whose lease was taken over stops before recording anything.

A lease is live until it expires, with one shortcut: an owner on this machine
whose process has died holds nothing, so ``recover()`` after a crash resumes at
once instead of waiting out the lease. The owner id carries the host, the PID
namespace (two containers sharing a host name and a volume do not see each
other's processes), the pid, and the process start time (so a reused pid is
not mistaken for the owner); the shortcut is taken only when all of them say so.

Across replicas a lease is only as good as sync: two replicas that cannot see
each other's writes can each take the same execution. Run an execution from
one replica at a time, or keep the replicas connected.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
import time

from syncstore import schema


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), or None where /proc is absent."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()
    return fields[0] if fields else None


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        return "-"


def new_owner() -> str:
    """An owner id: ``host:pid-namespace:pid:process-start:random``."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{_pid_namespace()}:{pid}:{_process_start(pid) or '-'}:{secrets.token_hex(4)}"


def owner_dead(owner: str) -> bool:
    """True only when ``owner`` is a process of this machine (and PID namespace)
    that no longer runs."""
    parts = owner.rsplit(":", 4)
    if len(parts) != 5:
        return False
    host, namespace, pid_text, start, _ = parts
    if host != socket.gethostname() or namespace == "-" or namespace != _pid_namespace():
        return False
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if pid == os.getpid():
        return False  # this process: another Workflows object here; let its lease run out
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # exists, owned by another user
    if _state(pid) == "Z":
        return True  # exited, not yet reaped
    started = _process_start(pid)
    return start != "-" and started is not None and started != start


def expiry(seconds: float) -> tuple[float, str]:
    """When a lease taken now ends: (unix time, stored timestamp)."""
    until = time.time() + seconds
    return until, stamp(until)


def stamp(unix: float) -> str:
    return schema.format_timestamp(dt.datetime.fromtimestamp(unix, dt.timezone.utc))


def live(owner: str | None, expires_at: str | None, *, me: str | None = None) -> bool:
    """Whether someone other than ``me`` holds this lease now."""
    if owner is None or owner == me or expires_at is None:
        return False
    if expires_at <= stamp(time.time()):  # stored stamps are fixed-width UTC: they sort as text
        return False
    return not owner_dead(owner)
