"""An execution's steps on a time axis, built from its snapshots, drawn in a terminal.

Every node of the definition gets a row, in definition order, whether it ran
or not, with its status:

- ``completed``: a ``step_end`` was recorded (``copied`` when a fork took it
  from its parent), with the failed attempts before it;
- ``failed``: attempts failed and the execution failed there;
- ``retrying``: attempts failed and the execution has not given up;
- ``running``: the execution's current step while a process runs it;
- ``interrupted``: the current step of an execution nobody is running;
- ``waiting``: a wait for a signal that has not come;
- ``skipped``: not run in a finished execution (e.g. the other branch);
- ``pending``: not reached yet.

An id that is no workflow execution (an agent execution, say) gets one row
per step number found in its snapshots.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec
from rich.console import Console
from rich.table import Table
from rich.text import Text

from syncstore import schema
from syncstore.errors import NotFoundError
from syncstore.workflows import records
from syncstore.workflows.definition import Condition, Parallel, Step, WaitForSignal
from syncstore.workflows.records import TERMINAL

if TYPE_CHECKING:
    from syncstore.workflows.engine import Engine

_KIND = {Step: "step", Condition: "condition", Parallel: "parallel", WaitForSignal: "wait"}

COLOURS = {
    "completed": "#2e9d4f",
    "copied": "#7fbf93",
    "failed": "#d64545",
    "attempt": "#f08c3a",
    "retrying": "#f08c3a",
    "running": "#3a7bd5",
    "interrupted": "#9b59b6",
    "waiting": "#e0b020",
    "skipped": "#b0b0b0",
    "pending": "#d0d0d0",
}


class Attempt(NamedTuple):
    start: float
    end: float
    error: str | None


class Row(NamedTuple):
    number: int
    id: str
    kind: str
    depth: int
    status: str
    start: float | None  # unix seconds
    end: float | None
    attempts: list[Attempt]  # failed attempts before the final one
    output: Any
    state: Any  # the whole workflow state after the step (from a replay), else what was recorded
    variables: Any
    error: str | None
    cpu_ms: float | None
    memory_bytes: int | None


class Timeline(NamedTuple):
    execution_id: str
    title: str
    status: str
    rows: list[Row]
    events: list[tuple[float, str]]  # checkpoints and signals: (time, label)
    start: float | None
    end: float | None


def _unix(text: str | None) -> float | None:
    return None if text is None else schema.parse_timestamp(text).timestamp()


def _json(text: str | None) -> Any:
    return None if text is None else msgspec.json.decode(text)


def build(engine: Engine, execution_id: str) -> Timeline:
    store = engine.store
    snaps = store.query("select * from execution_snapshots where execution_id = ? order by timestamp, id", (execution_id,))
    found = store.get("workflow_executions", execution_id)
    if found is None:
        if not snaps:
            raise NotFoundError("workflow_executions", execution_id)
        return _from_snapshots(execution_id, snaps)
    execution = records.execution(found)
    metadata = execution.metadata
    built = engine.catalog.pinned(found, metadata)
    workflow = store.get("workflows", execution.workflow_id)
    by_number: dict[int, list[dict[str, Any]]] = {}
    events = []
    for snap in snaps:
        if snap["step_number"] == 0 or snap["kind"] in ("signal", "checkpoint", "manual"):
            meta = _json(snap["metadata"]) or {}
            label = snap["kind"] if snap["kind"] != "checkpoint" else meta.get("event", "checkpoint")
            if snap["kind"] == "signal":
                label = f"signal {snap['step_name']}: {(_json(snap['output']) or {}).get('decision')}"
            events.append((_unix(snap["timestamp"]) or 0.0, label))
            if snap["step_number"] == 0:
                continue
        by_number.setdefault(snap["step_number"], []).append(snap)
    finished = execution.status in TERMINAL
    held = execution.lease_owner is not None
    # Whole states, and where the execution stands, come from a replay: snapshots
    # record only what each step changed, and current_step moves only now and then.
    from syncstore.workflows.timetravel import replay

    replayed = replay(engine, execution_id)
    states = {step.number: step.state for step in replayed.steps}
    position = replayed.stopped_at if not finished else execution.current_step
    rows = []
    for number, node in enumerate(built.nodes, start=1):
        made = _row(
            number, node.id, _KIND[type(node)], built.depths[number - 1], by_number.get(number, []), execution, finished, held, position
        )
        rows.append(made._replace(state=states[number]) if number in states else made)
    times = [t for r in rows for t in (r.start, r.end) if t is not None] + [t for t, _ in events]
    name = workflow["name"] if workflow else execution.workflow_id
    return Timeline(
        execution_id,
        f"{name} v{execution.workflow_version} - {execution_id}",
        execution.status,
        rows,
        events,
        min(times) if times else None,
        max(times) if times else None,
    )


def _row(
    number: int,
    node_id: str,
    kind: str,
    depth: int,
    snaps: list[dict[str, Any]],
    execution: records.ExecutionRecord,
    finished: bool,
    held: bool,
    position: int | None,
) -> Row:
    end = next((s for s in snaps if s["kind"] == "step_end"), None)
    errors = [s for s in snaps if s["kind"] == "error"]
    started = next((s for s in snaps if s["kind"] == "step_start"), None)
    attempts = []
    for err in errors:
        stop = _unix(err["timestamp"]) or 0.0
        meta = _json(err["metadata"]) or {}
        attempts.append(Attempt(stop - (err["duration_ms"] or 0.0) / 1000.0, stop, meta.get("error")))
    last_error = attempts[-1].error if attempts else None
    current = position == number
    if end is not None:
        stop = _unix(end["timestamp"]) or 0.0
        meta = _json(end["metadata"]) or {}
        begin = stop - (end["duration_ms"] or 0.0) / 1000.0
        if started is not None:  # a wait: it began when the waiting did
            begin = min(begin, _unix(started["timestamp"]) or begin)
        return Row(
            number,
            node_id,
            kind,
            depth,
            "copied" if "copied_from" in meta else "completed",
            begin,
            stop,
            attempts,
            _json(end["output"]),
            _json(end["state"]),
            _json(end["variables"]),
            None,
            end["cpu_ms"],
            end["memory_bytes"],
        )
    if attempts:
        status = "failed" if execution.status == "failed" and current else "retrying"
        if finished and status == "retrying":
            status = "failed"
        first, last = attempts[0], attempts[-1]
        err = errors[-1]
        return Row(number, node_id, kind, depth, status, first.start, last.end, attempts[:-1] if status == "failed" else attempts, None, _json(err["state"]), _json(err["variables"]), last_error, err["cpu_ms"], err["memory_bytes"])
    if started is not None or (current and kind == "wait" and execution.status == "waiting"):
        begin = _unix(started["timestamp"]) if started is not None else None
        status = "waiting" if execution.status == "waiting" and current else ("skipped" if finished else "interrupted")
        state = _json(started["state"]) if started is not None else None
        return Row(number, node_id, kind, depth, status, begin, None, [], None, state, None, None, None, None)
    if current and execution.status == "running":
        status = "running" if held else "interrupted"
        begin = execution.updated_at.timestamp() if execution.updated_at else None
        return Row(number, node_id, kind, depth, status, begin, None, [], None, None, None, None, None, None)
    return Row(number, node_id, kind, depth, "skipped" if finished else "pending", None, None, [], None, None, None, None, None, None)


def _from_snapshots(execution_id: str, snaps: list[dict[str, Any]]) -> Timeline:
    numbers: dict[int, list[dict[str, Any]]] = {}
    for snap in snaps:
        numbers.setdefault(snap["step_number"], []).append(snap)
    rows = []
    for number in sorted(numbers):
        group = numbers[number]
        end = next((s for s in group if s["kind"] == "step_end"), None)
        err = next((s for s in group if s["kind"] == "error"), None)
        start = next((s for s in group if s["kind"] == "step_start"), None)
        last = end or err or group[-1]
        stop = _unix(last["timestamp"])
        begin = _unix(start["timestamp"]) if start else (stop - (last["duration_ms"] or 0.0) / 1000.0 if stop else None)
        status = "completed" if end else ("failed" if err else "pending")
        error = (_json(err["metadata"]) or {}).get("error") if err else None
        name = last["step_name"] or next((s["step_name"] for s in group if s["step_name"]), None) or f"step {number}"
        rows.append(
            Row(number, name, last["kind"], 0, status, begin, stop if (end or err) else None, [], _json(last["output"]), _json(last["state"]), _json(last["variables"]), error, last["cpu_ms"], last["memory_bytes"])
        )
    times = [t for r in rows for t in (r.start, r.end) if t is not None]
    return Timeline(execution_id, f"snapshots of {execution_id}", "", rows, [], min(times) if times else None, max(times) if times else None)


# --- drawing in a terminal ------------------------------------------------------------


def _when(unix: float | None) -> str:
    if unix is None:
        return ""
    return dt.datetime.fromtimestamp(unix, dt.timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def render(timeline: Timeline, *, console: Console | None = None, width: int | None = None) -> None:
    """Draw the timeline: one line per step, a bar placed by time, coloured by
    status (failed attempts drawn with a lighter block before it)."""
    out = console or Console()
    if width is None:
        names = max((len(r.id) + 2 * r.depth for r in timeline.rows), default=4)
        width = max(10, min(60, out.width - names - 48))
    heading = f"{timeline.title} [{timeline.status}]" if timeline.status else timeline.title
    table = Table(title=heading, show_lines=False, title_justify="left")
    for name in ("#", "step", "status", "time", "ms", "tries"):
        table.add_column(name, no_wrap=True, min_width=len(name))
    t0 = timeline.start
    span = (timeline.end - t0) if timeline.start is not None and timeline.end is not None else 0.0

    def col(t: float) -> int:
        return 0 if t0 is None or span <= 0 else min(width - 1, int((t - t0) / span * (width - 1)))

    for r in timeline.rows:
        bar = Text(" " * width)
        if r.start is not None:
            for attempt in r.attempts:
                a, b = col(attempt.start), col(attempt.end) + 1
                bar = bar[:a] + Text("░" * (b - a), style=COLOURS["attempt"]) + bar[b:]
            stop = r.end if r.end is not None else timeline.end or r.start
            a, b = col(r.start), col(stop) + 1
            bar = bar[:a] + Text("█" * (b - a), style=COLOURS.get(r.status, "#888888")) + bar[b:]
        duration = "" if r.start is None or r.end is None else f"{(r.end - r.start) * 1000:.1f}"
        tries = len(r.attempts) + (1 if r.status in ("completed", "copied", "failed") else 0)
        table.add_row(
            str(r.number),
            "  " * r.depth + r.id + ("" if r.kind == "step" else f" ({r.kind})"),
            Text(r.status, style=COLOURS.get(r.status, "")),
            bar,
            duration,
            str(tries) if r.start is not None else "",
        )
    out.print(table)
    if t0 is not None:
        out.print(f"  time axis: {_when(t0)} to {_when(timeline.end)} UTC ({span * 1000:.1f} ms)")
    for when, label in timeline.events:
        out.print(f"  {_when(when)}  {label}")
    for r in timeline.rows:
        if r.error:
            out.print(Text(f"  step {r.number} {r.id}: {r.error}", style=COLOURS["failed"]))
