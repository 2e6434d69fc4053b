"""Execution snapshots: what a run looked like at a step, with its cost.

Each row of ``execution_snapshots`` records, for one execution and one step
number, a kind (``step_start``, ``step_end``, ``checkpoint``, ``error``,
``manual``, ``signal``), the state and variables at that moment, the step's
output, and its wall time, CPU time and the process's resident memory. Rows are
append-only, so snapshots taken on different replicas never conflict.

The workflow engine writes them for every step; anything else that runs in
steps (an agent execution, a script) can take them too::

    snaps = Snapshots(store)
    with snaps.step(agent_execution_id, 3, "call_model", state=ctx) as probe:
        reply = model(prompt)
        probe.output = reply
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from syncstore import schema
from syncstore.errors import NotFoundError
from syncstore.workflows import records
from syncstore.workflows.records import SnapshotRecord

if TYPE_CHECKING:
    from syncstore.replica.store import Replica

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_statm: tuple[int, int] | None = None  # (pid, fd): reopened after a fork, /proc/self is per process


def rss_bytes() -> int:
    """Resident memory of this process now (Linux), else its peak resident memory."""
    global _statm
    pid = os.getpid()
    try:
        if _statm is None or _statm[0] != pid:
            _statm = (pid, os.open("/proc/self/statm", os.O_RDONLY))
        return int(os.pread(_statm[1], 64, 0).split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if os.uname().sysname == "Darwin" else peak * 1024


class Meter:
    """Measures one piece of work on the calling thread: wall, CPU, memory."""

    __slots__ = ("started", "_wall", "_cpu", "duration_ms", "cpu_ms", "memory_bytes", "ended")

    def __init__(self) -> None:
        self.started = time.time()
        self._wall = time.perf_counter()
        self._cpu = time.thread_time()
        self.duration_ms = 0.0
        self.cpu_ms = 0.0
        self.memory_bytes = 0
        self.ended = self.started

    def stop(self) -> Meter:
        self.duration_ms = (time.perf_counter() - self._wall) * 1000.0
        self.cpu_ms = max(0.0, (time.thread_time() - self._cpu) * 1000.0)
        self.memory_bytes = rss_bytes()
        self.ended = self.started + self.duration_ms / 1000.0
        return self


def json_value(value: Any) -> Any:
    """A value for a JSON column. Those columns read a ``str`` as JSON text, so a
    string value (a step that returns "done") is encoded first; others pass as they are."""
    return schema.encode_json(value) if isinstance(value, str) else value


def iso(unix: float) -> str:
    return schema.format_timestamp(dt.datetime.fromtimestamp(unix, dt.timezone.utc))


def row(
    execution_id: str,
    step_number: int,
    kind: str,
    *,
    step_name: str | None = None,
    state: Any = None,
    variables: Any = None,
    output: Any = None,
    timestamp: str | None = None,
    meter: Meter | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One snapshot row, ready for ``insert``."""
    values: dict[str, Any] = {
        "execution_id": execution_id,
        "step_number": step_number,
        "kind": kind,
        "step_name": step_name,
        "timestamp": timestamp or (iso(meter.ended) if meter is not None else schema.now_iso()),
        "output": json_value(output),
    }
    if state is not None:
        values["state"] = json_value(state)
    if variables is not None:
        values["variables"] = json_value(variables)
    if meter is not None:
        values["duration_ms"] = meter.duration_ms
        values["cpu_ms"] = meter.cpu_ms
        values["memory_bytes"] = meter.memory_bytes
    if metadata:
        values["metadata"] = metadata
    return values


class StepProbe:
    """Handed out by :meth:`Snapshots.step`: set what the step produced."""

    def __init__(self, state: Any, variables: Any):
        self.output: Any = None
        self.state: Any = state
        self.variables: Any = variables


class Snapshots:
    """Take and read snapshots of any execution (workflow or agent)."""

    def __init__(self, store: Replica):
        self.store = store

    def take(
        self,
        execution_id: str,
        *,
        kind: str = "manual",
        step_number: int = 0,
        step_name: str | None = None,
        state: Any = None,
        variables: Any = None,
        output: Any = None,
        duration_ms: float | None = None,
        cpu_ms: float | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> SnapshotRecord:
        """Write one snapshot now; memory is measured, timings are what you pass."""
        values = row(
            execution_id,
            step_number,
            kind,
            step_name=step_name,
            state=state,
            variables=variables,
            output=output,
            metadata=metadata,
        )
        values["memory_bytes"] = rss_bytes()
        if duration_ms is not None:
            values["duration_ms"] = duration_ms
        if cpu_ms is not None:
            values["cpu_ms"] = cpu_ms
        snapshot_id = self.store.insert("execution_snapshots", values)
        return self.get(snapshot_id)

    @contextmanager
    def step(
        self,
        execution_id: str,
        step_number: int,
        step_name: str | None = None,
        *,
        state: Any = None,
        variables: Any = None,
    ) -> Iterator[StepProbe]:
        """Snapshot a step around a block: ``step_start`` now, then ``step_end``
        (or ``error``, and the exception goes on) with time, CPU and memory."""
        probe = StepProbe(state, variables)
        self.store.insert(
            "execution_snapshots",
            row(execution_id, step_number, "step_start", step_name=step_name, state=state, variables=variables),
        )
        meter = Meter()
        try:
            yield probe
        except BaseException as exc:
            meter.stop()
            self.store.insert(
                "execution_snapshots",
                row(
                    execution_id,
                    step_number,
                    "error",
                    step_name=step_name,
                    state=probe.state,
                    variables=probe.variables,
                    meter=meter,
                    metadata={"error": f"{type(exc).__name__}: {exc}", "started_at": iso(meter.started)},
                ),
            )
            raise
        meter.stop()
        self.store.insert(
            "execution_snapshots",
            row(
                execution_id,
                step_number,
                "step_end",
                step_name=step_name,
                state=probe.state,
                variables=probe.variables,
                output=probe.output,
                meter=meter,
                metadata={"started_at": iso(meter.started)},
            ),
        )

    def get(self, snapshot_id: str) -> SnapshotRecord:
        found = self.store.get("execution_snapshots", snapshot_id)
        if found is None:
            raise NotFoundError("execution_snapshots", snapshot_id)
        return records.snapshot(found)

    def list(self, execution_id: str, *, kinds: Iterable[str] | None = None) -> list[SnapshotRecord]:
        """An execution's snapshots in the order they were taken."""
        sql = "select * from execution_snapshots where execution_id = ?"
        params: list[Any] = [execution_id]
        if kinds is not None:
            wanted = list(kinds)
            sql += f" and kind in ({', '.join('?' * len(wanted))})"
            params += wanted
        sql += " order by timestamp, id"
        return [records.snapshot(r) for r in self.store.query(sql, params)]

    def at(self, execution_id: str, step_number: int) -> SnapshotRecord | None:
        """The snapshot that closed ``step_number`` (its first ``step_end``)."""
        found = self.store.query(
            "select * from execution_snapshots where execution_id = ? and kind = 'step_end' and step_number = ? "
            "order by timestamp, id limit 1",
            (execution_id, step_number),
        )
        return records.snapshot(found[0]) if found else None
