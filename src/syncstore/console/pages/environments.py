"""Environments: the list, a new one, and making one the active environment."""

from __future__ import annotations

from typing import Any, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncstore.console.forms import form, optional, text
from syncstore.console.pages.common import paged, params_of, see_other, store_of
from syncstore.console.templating import render
from syncstore.errors import ValidationError
from syncstore.store import Store


def environment_list(store: Store, params: Mapping[str, str]) -> dict[str, Any]:
    """The library reads behind the environments page: a page of them, by name."""
    rows, page = paged(lambda **window: store.environments.list(order_by="name", **window), params)
    return {"environments": rows, "page": page}


def list_page(request: Request) -> Response:
    data = environment_list(store_of(request), params_of(request))
    return render(request, "environments/list.html", {**data, "active": "environments", "error": None, "values": {}})


def create(request: Request) -> Response:
    store = store_of(request)
    fields = form(request)
    try:
        store.environments.create(
            text(fields, "name"),
            description=text(fields, "description"),
            github_organization=text(fields, "github_organization"),
            github_repository=text(fields, "github_repository"),
            user_id=optional(fields, "user_id"),
            is_active=fields.get("is_active") == "1",
        )
    except ValidationError as exc:
        data = environment_list(store, {})
        context = {**data, "active": "environments", "error": str(exc), "values": fields}
        return render(request, "environments/list.html", context, status=400)
    return see_other(request, "/environments")


def activate(request: Request) -> Response:
    store_of(request).environments.activate(request.path_params["env_id"])
    return see_other(request, "/environments")


def deactivate(request: Request) -> Response:
    store_of(request).environments.deactivate(request.path_params["env_id"])
    return see_other(request, "/environments")


routes = [
    Route("/environments", list_page, methods=["GET"]),
    Route("/environments", create, methods=["POST"]),
    Route("/environments/{env_id}/activate", activate, methods=["POST"]),
    Route("/environments/{env_id}/deactivate", deactivate, methods=["POST"]),
]
