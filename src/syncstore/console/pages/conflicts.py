"""Conflicts: the open records, both values side by side with clocks and sites,
and resolving one by keeping either side or writing a new value."""

from __future__ import annotations

from typing import Any, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncstore.console.forms import form, json_value
from syncstore.console.pages.common import params_of, see_other, store_of
from syncstore.console.templating import render
from syncstore.errors import ValidationError
from syncstore.store import Store
from syncstore.sync import conflicts as cf

LIMIT = 200


def conflict_list(store: Store, params: Mapping[str, str]) -> dict[str, Any]:
    """The library reads behind the conflicts page: records, newest first."""
    everything = params.get("all") == "1"
    return {"conflicts": cf.list_conflicts(store, include_resolved=everything, limit=LIMIT), "all": everything}


def conflict_detail(store: Store, conflict_id: str) -> dict[str, Any]:
    record = cf.get_conflict(store, conflict_id)
    return {"c": record, "row": store.get(record.table, record.row_id)}


def list_page(request: Request) -> Response:
    data = conflict_list(store_of(request), params_of(request))
    return render(request, "conflicts/list.html", {**data, "active": "conflicts"})


def detail_page(request: Request) -> Response:
    data = conflict_detail(store_of(request), request.path_params["conflict_id"])
    return render(request, "conflicts/detail.html", {**data, "active": "conflicts", "error": None, "value": ""})


def resolve(request: Request) -> Response:
    """Keep the winner's or the loser's value, or write a new one: a local write that syncs."""
    store = store_of(request)
    conflict_id = request.path_params["conflict_id"]
    fields = form(request)
    keep = fields.get("keep")
    try:
        if keep in cf.KEEP:
            record = cf.resolve_conflict(store, conflict_id, keep=keep)
        elif keep == "value":
            record = cf.resolve_conflict(store, conflict_id, value=json_value(fields, "value"))
        else:
            raise ValidationError("choose the winner's value, the loser's, or a new value", field="keep")
    except ValidationError as exc:
        data = conflict_detail(store, conflict_id)
        context = {**data, "active": "conflicts", "error": str(exc), "value": fields.get("value", "")}
        return render(request, "conflicts/detail.html", context, status=400)
    return see_other(request, f"/conflicts/{record.id}")


routes = [
    Route("/conflicts", list_page, methods=["GET"]),
    Route("/conflicts/{conflict_id}", detail_page, methods=["GET"]),
    Route("/conflicts/{conflict_id}/resolve", resolve, methods=["POST"]),
]
