"""Workflows: executions with their controls, the timeline, replay step by step
with the state as a tree, a side-by-side diff of two runs, and fork from a step."""

from __future__ import annotations

from typing import Any, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncstore import schema
from syncstore.console import charts
from syncstore.console.forms import form, integer, json_value, optional, text
from syncstore.console.pages.common import choice, paged, params_of, see_other, store_of
from syncstore.console.templating import render
from syncstore.errors import ValidationError
from syncstore.store import Store
from syncstore.workflows import definition as defs
from syncstore.workflows.control import DECISIONS
from syncstore.workflows.definition import WaitForSignal

CONTROLS = ("pause", "resume", "cancel")


def _names(store: Store) -> dict[str, str]:
    """Workflow ids to "name v<version>"."""
    return {w.id: f"{w.name} v{w.version}" for w in store.workflows.definitions()}


def execution_list(store: Store, params: Mapping[str, str]) -> dict[str, Any]:
    """The library reads behind the workflow executions list: a page, newest first."""
    status = choice(params, "status", schema.WORKFLOW_STATUSES)
    workflow = params.get("workflow")
    rows, page = paged(lambda **window: store.workflows.list(status=status, workflow=workflow, **window), params)
    definitions = store.workflows.definitions()
    return {
        "executions": rows,
        "page": page,
        "filters": params,
        "names": {w.id: f"{w.name} v{w.version}" for w in definitions},
        "workflow_names": sorted({w.name for w in definitions}),
    }


def execution_detail(store: Store, execution_id: str) -> dict[str, Any]:
    """The library reads behind an execution's page: the run, its timeline, runs to compare with."""
    execution = store.workflows.get(execution_id)
    timeline = store.workflows.timeline(execution_id)
    others = [
        e for e in store.workflows.list(limit=50) if e.id != execution_id and e.workflow_id == execution.workflow_id
    ]
    record = store.get("workflows", execution.workflow_id)
    waiting: list[str] = []
    if record is not None:
        built = defs.plan(record["definition"])
        for row in timeline.rows:
            node = built.node(row.number) if row.number <= built.total else None
            if row.status == "waiting" and isinstance(node, WaitForSignal):
                waiting.append(node.signal or node.id)
    return {
        "execution": execution,
        "timeline": timeline,
        "axis": charts.step_axis(timeline.rows, start=timeline.start, end=timeline.end),
        "others": others,
        "name": (f"{record['name']} v{record['version']}" if record else execution.workflow_id),
        "waiting": waiting,
    }


def replay_at(store: Store, execution_id: str, params: Mapping[str, str]) -> dict[str, Any]:
    """The library reads behind the replay page: every recorded step re-derived, and the
    state after the chosen one (step 0 is the start)."""
    execution = store.workflows.get(execution_id)
    replay = store.workflows.replay(execution_id)
    numbers = [0] + [s.number for s in replay.steps]
    asked = integer(params, "step", default=numbers[1] if len(numbers) > 1 else 0, minimum=0)
    if asked not in numbers:
        raise ValidationError(
            f"step {asked} was not replayed; the recorded steps are {', '.join(map(str, numbers[1:])) or 'none'}", field="step"
        )
    position = numbers.index(asked)
    current = replay.steps[position - 1] if position else None
    state = current.state if current else {}
    before = replay.steps[position - 2].state if position >= 2 else {}
    changed = sorted(key for key in set(state) | set(before) if state.get(key) != before.get(key))
    return {
        "execution": execution,
        "replay": replay,
        "numbers": numbers,
        "position": position,
        "step": current,
        "state": state,
        "changed": changed,
        "previous": numbers[position - 1] if position > 0 else None,
        "next": numbers[position + 1] if position + 1 < len(numbers) else None,
    }


def diff_of(store: Store, params: Mapping[str, str]) -> dict[str, Any]:
    """The library reads behind the diff page: the two runs compared step by step."""
    a, b = params.get("a"), params.get("b")
    result = store.workflows.diff(a, b) if a and b else None
    recent = store.workflows.list(limit=100)
    return {"diff": result, "a": a, "b": b, "recent": recent, "names": _names(store)}


def list_page(request: Request) -> Response:
    data = execution_list(store_of(request), params_of(request))
    context = {**data, "active": "workflows", "statuses": schema.WORKFLOW_STATUSES}
    return render(request, "workflows/list.html", context)


def detail_page(request: Request) -> Response:
    data = execution_detail(store_of(request), request.path_params["execution_id"])
    return render(request, "workflows/detail.html", {**data, "active": "workflows", "decisions": DECISIONS})


def replay_page(request: Request) -> Response:
    data = replay_at(store_of(request), request.path_params["execution_id"], params_of(request))
    return render(request, "workflows/replay.html", {**data, "active": "workflows"})


def diff_page(request: Request) -> Response:
    data = diff_of(store_of(request), params_of(request))
    return render(request, "workflows/diff.html", {**data, "active": "workflows"})


def control(request: Request) -> Response:
    """Pause, resume or cancel: a request written to the replica, obeyed by whichever
    process runs the execution (here or on another replica, after sync)."""
    store = store_of(request)
    execution_id = request.path_params["execution_id"]
    action = request.path_params["action"]
    if action not in CONTROLS:
        raise ValidationError(f"the action must be one of {', '.join(CONTROLS)}", field="action")
    getattr(store.workflows, action)(execution_id)
    return see_other(request, _back(request, f"/workflows/{execution_id}"))


def signal(request: Request) -> Response:
    store = store_of(request)
    execution_id = request.path_params["execution_id"]
    fields = form(request)
    name = text(fields, "name")
    decision = text(fields, "decision") or "approve"
    data = json_value(fields, "data") if optional(fields, "data") else None
    store.workflows.signal(execution_id, name, decision=decision, data=data, sent_by="console")
    return see_other(request, f"/workflows/{execution_id}")


def fork(request: Request) -> Response:
    store = store_of(request)
    execution_id = request.path_params["execution_id"]
    from_step = integer(form(request), "from_step", minimum=1)
    if from_step is None:
        raise ValidationError("give the step to fork from", field="from_step")
    forked = store.workflows.fork(execution_id, from_step=from_step)
    return see_other(request, f"/workflows/{forked.id}")


def _back(request: Request, default: str) -> str:
    """Where a control button was pressed (the list or the detail page): a console
    path under /workflows, never anywhere else."""
    root = request.scope.get("root_path", "")
    target = form(request).get("back", "")
    if target.startswith(root + "/workflows") and "//" not in target and "\\" not in target:
        return target[len(root) :]
    return default


routes = [
    Route("/workflows", list_page, methods=["GET"]),
    Route("/workflows/diff", diff_page, methods=["GET"]),
    Route("/workflows/{execution_id}", detail_page, methods=["GET"]),
    Route("/workflows/{execution_id}/replay", replay_page, methods=["GET"]),
    Route("/workflows/{execution_id}/signal", signal, methods=["POST"]),
    Route("/workflows/{execution_id}/fork", fork, methods=["POST"]),
    Route("/workflows/{execution_id}/{action}", control, methods=["POST"]),
]
