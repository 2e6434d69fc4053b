"""Time travel: replay a recorded execution, read its state at any step, fork it, diff two.

A replay walks the execution's pinned definition with the same walker the
engine runs, but hands back recorded outputs and calls no step function, so no
side effect happens again and it needs none of the program's code. Because
the walker is the same, the states it reaches are the states the run reached;
each is compared with the state the run recorded, and any difference is
reported (it means the record or the definition was changed).

A fork copies the recorded steps before step ``k`` into a new execution (its
parent is the original) with optionally a new input and changed state; running
it replays those steps and runs the rest live.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

import msgspec

from syncstore import schema
from syncstore.errors import NotFoundError, WorkflowError
from syncstore.workflows.definition import Condition, Node, Parallel, Plan, Step, WaitForSignal
from syncstore.workflows.snapshots import json_value
from syncstore.workflows.walker import Recorded, Rejected, Walker

if TYPE_CHECKING:
    from syncstore.workflows.engine import Engine

_KIND = {Step: "step", Condition: "condition", Parallel: "parallel", WaitForSignal: "wait_for_signal"}
_UNSET: Any = object()


class ReplayedStep(NamedTuple):
    number: int
    id: str
    kind: str
    output: Any
    state: dict[str, Any]  # the whole state after this node
    matches_record: bool | None  # whether the state changes equal the recorded ones (None: none recorded)


class Replay(NamedTuple):
    execution_id: str
    steps: list[ReplayedStep]
    state: dict[str, Any]
    output: Any
    complete: bool  # reached the end of the definition (or a recorded rejection)
    stopped_at: int | None  # the first node with no record, when not complete
    rejected: bool
    mismatches: list[str]  # where the replay disagrees with what the run recorded

    @property
    def deterministic(self) -> bool:
        return not self.mismatches


class _NotRecorded(Exception):
    def __init__(self, number: int):
        self.number = number


class _Replayer(Walker):
    def __init__(self, plan: Plan, recorded: dict[int, Recorded], **kw: Any):
        super().__init__(plan, recorded, **kw)
        self.steps: list[ReplayedStep] = []
        self.mismatches: list[str] = []

    def live_step(self, node: Step, number: int, state: dict[str, Any], lane: Any) -> Any:
        raise _NotRecorded(number)

    def live_condition(self, node: Condition, number: int, state: dict[str, Any], lane: Any) -> bool:
        raise _NotRecorded(number)

    def live_wait(self, node: WaitForSignal, number: int, state: dict[str, Any], lane: Any) -> Any:
        raise _NotRecorded(number)

    def passed(
        self, node: Node, number: int, state: dict[str, Any], rec: Recorded | None, output: Any, changed: dict[str, Any]
    ) -> None:
        matches = None
        if rec is not None and rec.state is not None:
            matches = msgspec.json.decode(rec.state) == changed
            if not matches:
                self.mismatches.append(f"step {number} {node.id!r}: the replayed state changes differ from the recorded ones")
        self.steps.append(ReplayedStep(number, node.id, _KIND[type(node)], output, dict(state), matches))


def _recorded(engine: Engine, execution_id: str) -> dict[int, Recorded]:
    out: dict[int, Recorded] = {}
    for snapshot_id, number, output, state in engine.store.connection.execute(
        "select id, step_number, output, state from execution_snapshots "
        "where execution_id = ? and kind = 'step_end' order by timestamp, id",
        (execution_id,),
    ):
        if number not in out:
            out[number] = Recorded(None if output is None else msgspec.json.decode(output), snapshot_id, state)
    return out


def _execution(engine: Engine, execution_id: str) -> tuple[dict[str, Any], dict[str, Any], Plan]:
    found = engine.store.get("workflow_executions", execution_id)
    if found is None:
        raise NotFoundError("workflow_executions", execution_id)
    metadata = msgspec.json.decode(found["metadata"]) if found["metadata"] else {}
    return found, metadata, engine.catalog.pinned(found, metadata)


def replay(engine: Engine, execution_id: str) -> Replay:
    """Re-derive every state of an execution from its records; nothing is run."""
    found, metadata, built = _execution(engine, execution_id)
    fork = metadata.get("fork") or {}
    walker = _Replayer(
        built,
        _recorded(engine, execution_id),
        input=None if found["input"] is None else msgspec.json.decode(found["input"]),
        patch_at=fork.get("from_step"),
        patch=fork.get("state"),
    )
    state: dict[str, Any] = {}
    complete, stopped_at, rejected = True, None, False
    try:
        walker.walk(built.definition.steps, state, None)
    except _NotRecorded as missing:
        complete, stopped_at = False, missing.number
    except Rejected:
        rejected = True
    key = built.definition.output
    output = (state.get(key) if key is not None else state) if complete and not rejected else None
    mismatches = list(walker.mismatches)
    if complete and not rejected and found["status"] == "completed":
        recorded_output = None if found["output"] is None else msgspec.json.decode(found["output"])
        if recorded_output != output:
            mismatches.append("the replayed output differs from the recorded output")
    return Replay(execution_id, walker.steps, state, output, complete, stopped_at, rejected, mismatches)


def state_at(engine: Engine, execution_id: str, step_number: int) -> dict[str, Any]:
    """The workflow state as it was when step ``step_number`` ended (0: the start)."""
    if step_number == 0:
        return {}
    result = replay(engine, execution_id)
    for step in result.steps:
        if step.number == step_number:
            return step.state
    _, _, built = _execution(engine, execution_id)
    node = built.node(step_number)
    raise WorkflowError(f"step {step_number} {node.id!r} did not run in execution {execution_id}")


def fork(
    engine: Engine,
    execution_id: str,
    *,
    from_step: int,
    input: Any = _UNSET,  # noqa: A002
    state: Mapping[str, Any] | None = None,
    triggered_by: str = "fork",
) -> str:
    """A new execution that keeps steps ``1 .. from_step - 1`` of this one and runs
    the rest anew, with ``input`` (default: the original's) and ``state`` merged
    into the state where step ``from_step`` begins. Returns the new id."""
    found, metadata, built = _execution(engine, execution_id)
    if not 1 <= from_step <= built.total:
        raise WorkflowError(f"from_step must be between 1 and {built.total}")
    if from_step in built.in_parallel:
        raise WorkflowError(
            f"step {from_step} {built.node(from_step).id!r} is inside a parallel branch; fork from the parallel step itself"
        )
    kept = [
        r
        for r in engine.store.query(
            "select * from execution_snapshots where execution_id = ? and kind = 'step_end' and step_number < ? "
            "order by timestamp, id",
            (execution_id, from_step),
        )
    ]
    seen: set[int] = set()
    store = engine.store
    fork_meta: dict[str, Any] = {"from_execution": execution_id, "from_step": from_step}
    if state:
        fork_meta["state"] = dict(state)
    with store.transaction():
        new_id = store.insert(
            "workflow_executions",
            {
                "workflow_id": found["workflow_id"],
                "workflow_version": found["workflow_version"],
                "input": found["input"] if input is _UNSET else json_value(input),
                "total_steps": built.total,
                "triggered_by": triggered_by,
                "parent_execution_id": execution_id,
                "metadata": {"definition_sha256": built.sha256, "fork": fork_meta},
            },
        )
        for snap in kept:
            if snap["step_number"] in seen:
                continue
            seen.add(snap["step_number"])
            meta = msgspec.json.decode(snap["metadata"]) if snap["metadata"] else {}
            meta["copied_from"] = snap["id"]
            copy = {k: snap[k] for k in ("step_number", "step_name", "kind", "state", "variables", "output", "timestamp", "duration_ms", "memory_bytes", "cpu_ms")}
            store.insert("execution_snapshots", {**copy, "execution_id": new_id, "metadata": meta})
    return new_id


class StepDiff(NamedTuple):
    id: str
    a: Any  # (status, output) in execution a, or None when the step did not run there
    b: Any
    reason: str | None  # None when the two agree


class ExecutionDiff(NamedTuple):
    a: str
    b: str
    input_differs: bool
    steps: list[StepDiff]
    first_divergence: StepDiff | None

    def describe(self) -> str:
        if self.first_divergence is None:
            return "the executions agree step by step" + (" (their inputs differ)" if self.input_differs else "")
        d = self.first_divergence
        return f"first divergence at step {d.id!r}: {d.reason}"


def _views(engine: Engine, execution_id: str) -> tuple[list[str], dict[str, tuple[str, Any, Any]], Any]:
    """Each node's (status, output, state) in the order the execution reached them."""
    result = replay(engine, execution_id)
    order = [s.id for s in result.steps]
    views = {s.id: ("completed", s.output, s.state) for s in result.steps}
    found = engine.store.get("workflow_executions", execution_id)
    for number, name, metadata in engine.store.connection.execute(
        "select step_number, step_name, metadata from execution_snapshots where execution_id = ? and kind = 'error' "
        "order by timestamp, id",
        (execution_id,),
    ):
        if name and name not in views and number > 0:
            error = (msgspec.json.decode(metadata) if metadata else {}).get("error")
            views[name] = ("failed", error, None)
            order.append(name)
    input_value = None if found is None or found["input"] is None else msgspec.json.decode(found["input"])
    return order, views, input_value


def diff(engine: Engine, a: str, b: str) -> ExecutionDiff:
    """Compare two executions step by step (by step id, so different versions
    compare too) and name the first step where they part."""
    order_a, views_a, input_a = _views(engine, a)
    order_b, views_b, input_b = _views(engine, b)
    order = order_a + [name for name in order_b if name not in views_a]
    steps = []
    for name in order:
        va, vb = views_a.get(name), views_b.get(name)
        reason = None
        if va is None or vb is None:
            reason = f"ran only in {'b' if va is None else 'a'}"
        elif va[0] != vb[0]:
            reason = f"{va[0]} in a, {vb[0]} in b"
        elif va[1] != vb[1]:
            reason = f"output {_short(va[1])} in a, {_short(vb[1])} in b"
        elif va[2] != vb[2]:
            reason = "same output, but the state after it differs"
        steps.append(StepDiff(name, None if va is None else va[:2], None if vb is None else vb[:2], reason))
    first = next((s for s in steps if s.reason is not None), None)
    return ExecutionDiff(a, b, input_a != input_b, steps, first)


def _short(value: Any, limit: int = 80) -> str:
    text = schema.encode_json(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

