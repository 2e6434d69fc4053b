"""Tasks: the list with filters and pages, create, edit, archive, and a task's messages."""

from __future__ import annotations

from typing import Any, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncstore import schema
from syncstore.console.forms import form, optional, text
from syncstore.console.pages.common import choice, paged, params_of, see_other, store_of
from syncstore.console.templating import render
from syncstore.errors import ValidationError
from syncstore.store import Store

EDITABLE = ("title", "description", "status", "priority", "repository", "branch", "mode")
CHOICES = {"status": schema.TASK_STATUSES, "priority": schema.TASK_PRIORITIES, "mode": schema.TASK_MODES}


def task_list(store: Store, params: Mapping[str, str]) -> dict[str, Any]:
    """The library reads behind the task list: one page of tasks, newest change first."""
    filters: dict[str, Any] = {
        "status": choice(params, "status", schema.TASK_STATUSES),
        "priority": choice(params, "priority", schema.TASK_PRIORITIES),
        "repository": params.get("repository"),
        "is_archived": params.get("archived") == "1",
    }
    rows, page = paged(
        lambda **window: store.tasks.list(order_by="updated_at", descending=True, **window, **filters), params
    )
    return {"tasks": rows, "page": page, "filters": params}


RUNS_SHOWN = 20


def task_detail(store: Store, task_id: str) -> dict[str, Any]:
    """The library reads behind a task's page: the task, its message log and its newest agent runs."""
    return {
        "task": store.tasks.get(task_id),
        "messages": store.messages.for_task(task_id),
        "runs": store.executions.list(task_id=task_id, order_by="created_at", descending=True, limit=RUNS_SHOWN),
    }


def _detail(request: Request, data: dict[str, Any], *, values: Mapping[str, Any] | None = None, error: str | None = None) -> Response:
    shown = values if values is not None else {name: getattr(data["task"], name) for name in EDITABLE}
    context = {**data, "active": "tasks", "choices": CHOICES, "values": shown, "error": error}
    return render(request, "tasks/detail.html", context, status=200 if error is None else 400)


def list_page(request: Request) -> Response:
    data = task_list(store_of(request), params_of(request))
    return render(request, "tasks/list.html", {**data, "active": "tasks", "choices": CHOICES})


def new_page(request: Request) -> Response:
    return render(request, "tasks/new.html", {"active": "tasks", "choices": CHOICES, "values": {}, "error": None})


def create(request: Request) -> Response:
    fields = form(request)
    values = {name: text(fields, name) for name in EDITABLE if name in fields}
    try:
        task = store_of(request).tasks.create(values.pop("title", ""), **values)
    except ValidationError as exc:
        context = {"active": "tasks", "choices": CHOICES, "values": fields, "error": str(exc)}
        return render(request, "tasks/new.html", context, status=400)
    return see_other(request, f"/tasks/{task.id}")


def detail_page(request: Request) -> Response:
    return _detail(request, task_detail(store_of(request), request.path_params["task_id"]))


def edit(request: Request) -> Response:
    """Write only the fields the person changed: rewriting the others would stamp
    them anew and override a concurrent edit of them made elsewhere."""
    store = store_of(request)
    task_id = request.path_params["task_id"]
    task = store.tasks.get(task_id)
    fields = form(request)
    changes = {name: text(fields, name) for name in EDITABLE if name in fields and text(fields, name) != getattr(task, name)}
    if "title" in changes and not changes["title"]:
        error: str | None = "tasks.title: must not be empty"
    else:
        error = None
        if changes:
            try:
                store.tasks.update(task_id, **changes)
            except ValidationError as exc:
                error = str(exc)
    if error is not None:
        return _detail(request, task_detail(store, task_id), values=fields, error=error)
    return see_other(request, f"/tasks/{task_id}")


def archive(request: Request) -> Response:
    store = store_of(request)
    task_id = request.path_params["task_id"]
    task = store.tasks.get(task_id)
    store.tasks.update(task_id, is_archived=not task.is_archived)
    return see_other(request, f"/tasks/{task_id}")


def add_message(request: Request) -> Response:
    store = store_of(request)
    task_id = request.path_params["task_id"]
    fields = form(request)
    role = optional(fields, "role") or "user"
    content = text(fields, "content")
    if not content:
        raise ValidationError("must not be empty", table="task_messages", field="content")
    store.messages.add(task_id, role, content)
    return see_other(request, f"/tasks/{task_id}#messages")


routes = [
    Route("/tasks", list_page, methods=["GET"]),
    Route("/tasks", create, methods=["POST"]),
    Route("/tasks/new", new_page, methods=["GET"]),
    Route("/tasks/{task_id}", detail_page, methods=["GET"]),
    Route("/tasks/{task_id}", edit, methods=["POST"]),
    Route("/tasks/{task_id}/archive", archive, methods=["POST"]),
    Route("/tasks/{task_id}/messages", add_message, methods=["POST"]),
]
