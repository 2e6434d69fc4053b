"""Agent memory: search with scores and filters, or the newest memories when no query is given."""

from __future__ import annotations

from typing import Any, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncstore import schema
from syncstore.console.forms import integer
from syncstore.console.pages.common import choice, params_of, store_of
from syncstore.console.templating import render
from syncstore.store import Store

DEFAULT_K = 20
MAX_K = 200


def memory_search(store: Store, params: Mapping[str, str]) -> dict[str, Any]:
    """The library reads behind the memory page: ``store.memory.search`` (not counted
    as the agents' reads: a person looking is not an agent remembering), or the
    newest memories passing the filters when there is no query."""
    filters: dict[str, Any] = {
        "agent_id": params.get("agent_id"),
        "memory_type": choice(params, "memory_type", schema.MEMORY_TYPES),
        "tags": [tag.strip() for tag in params.get("tags", "").split(",") if tag.strip()] or None,
        "min_importance": integer(params, "min_importance", minimum=1),
        "include_inactive": params.get("include_inactive") == "1",
        "include_expired": params.get("include_expired") == "1",
    }
    k = min(MAX_K, integer(params, "k", default=DEFAULT_K, minimum=1) or DEFAULT_K)
    query = params.get("q", "").strip()
    memory = store.memory
    if query:
        hits = memory.search(query, k=k, record_access=False, **filters)
        return {"query": query, "hits": hits, "memories": None, "k": k, "model": memory.embedder.model}
    return {"query": "", "hits": None, "memories": memory.list(limit=k, **filters), "k": k, "model": memory.embedder.model}


def search_page(request: Request) -> Response:
    params = params_of(request)
    data = memory_search(store_of(request), params)
    agents = [row["agent_id"] for row in store_of(request).query("select distinct agent_id from agent_memory order by 1 limit 500")]
    context = {**data, "filters": params, "agents": agents, "types": schema.MEMORY_TYPES, "active": "memory"}
    return render(request, "memory/search.html", context)


routes = [Route("/memory", search_page, methods=["GET"])]
