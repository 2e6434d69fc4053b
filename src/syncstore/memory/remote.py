"""Memory search on a sync server: every replica's synced memories of one tenant.

    from syncstore.memory.remote import search_server
    found = search_server("ws://sync.example:8765", token=token, query="deploy to staging", k=5)
    for hit in found.hits:
        print(hit.score, hit.memory["content"])

The server answers ``GET /v1/memory/search`` on the sync port (see
docs/server.md) for the tenant of ``token``. Give ``query`` (text: the server
embeds it, for the hashing models only) or ``vector`` with its ``model``. The
filters and ranking are those of ``store.memory.search``; the server's ``now``
decides expiry. Errors: a bad request is a ValidationError naming the field,
a refused token an AuthError, anything else an ExternalServiceError
(``retryable`` when the server is busy or unreachable).
"""

from __future__ import annotations

import base64
from typing import Any, Sequence, Unpack

import httpx
import msgspec
import numpy as np

from syncstore.errors import AuthError, ExternalServiceError, ValidationError
from syncstore.shared.memory.filters import FilterOptions, Filters
from syncstore.shared.memory.ranking import Ranking

PATH = "/v1/memory/search"
SERVICE = "sync server memory search"


class RemoteHit(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    score: float
    similarity: float
    memory: dict[str, Any]  # the agent_memory columns (no embedding); times as ISO-8601 UTC text


class RemoteSearch(msgspec.Struct, frozen=True, kw_only=True):
    hits: list[RemoteHit]
    strategy: str  # "index" (HNSW), "exact" (pgvector, every row) or "scan" (bytea, every row)
    model: str
    dimensions: int
    k: int


def http_url(url: str) -> str:
    """The server's HTTP root for a sync URL (``ws://`` becomes ``http://``)."""
    root = url.rstrip("/")
    for old, new in (("ws://", "http://"), ("wss://", "https://")):
        if root.startswith(old):
            return new + root[len(old) :]
    return root


def encode_vector(vector: np.ndarray | Sequence[float]) -> str:
    """A query vector as the server reads it: URL-safe base64 of little-endian float32."""
    return base64.urlsafe_b64encode(np.asarray(vector, dtype="<f4").reshape(-1).tobytes()).decode().rstrip("=")


def search_server(
    url: str,
    *,
    token: str,
    query: str | None = None,
    vector: np.ndarray | Sequence[float] | None = None,
    model: str | None = None,
    k: int = 10,
    ranking: str = "default",
    exact: bool = False,
    timeout: float = 30.0,
    client: httpx.Client | None = None,
    **filters: Unpack[FilterOptions],
) -> RemoteSearch:
    """The top ``k`` of the token's tenant's memories on the server at ``url``
    among those passing the filters (see :class:`FilterOptions`). The filters
    and the ranking name are checked here, as the server would check them."""
    # now=None here makes a caller's now= a TypeError: the server's clock decides expiry.
    checked = Filters.make(now=None, **filters)
    Ranking.named(ranking)  # an unknown name is refused before any request
    params: list[tuple[str, str]] = []
    if query is not None:
        params.append(("query", query))
    if vector is not None:
        params.append(("vector", encode_vector(vector)))
    if model is not None:
        params.append(("model", model))
    params.append(("k", str(k)))
    params += _filter_params(checked)
    if exact:
        params.append(("exact", "true"))
    if ranking != "default":
        params.append(("ranking", ranking))
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    target = http_url(url) + PATH
    try:
        if client is None:
            with httpx.Client(timeout=timeout) as own:
                response = own.get(target, params=params, headers=headers)
        else:
            response = client.get(target, params=params, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise ExternalServiceError(f"{SERVICE} unreachable: {type(exc).__name__}", service=SERVICE) from None
    return _answer(response)


def _filter_params(filters: Filters) -> list[tuple[str, str]]:
    """The filters as the server's query string takes them; not ``now``: the server's clock decides expiry."""
    params = [("agent_id", filters.agent_id)] if filters.agent_id is not None else []
    params += [("memory_type", name) for name in filters.memory_types or ()]
    params += [("tag", tag) for tag in filters.tags]
    if filters.min_importance is not None:
        params.append(("min_importance", str(filters.min_importance)))
    params += [(name, "true") for name in ("include_inactive", "include_expired") if getattr(filters, name)]
    return params


def _answer(response: httpx.Response) -> RemoteSearch:
    status = response.status_code
    if status == 200:
        try:
            return msgspec.json.decode(response.content, type=RemoteSearch)
        except msgspec.DecodeError as exc:
            message = f"{SERVICE} sent an answer that is not a search result: {exc}"
            raise ExternalServiceError(message, service=SERVICE, status=status) from None
    try:
        error = msgspec.json.decode(response.content)
        message = str(error.get("message") or response.reason_phrase)
        field = error.get("field")
    except (msgspec.DecodeError, AttributeError):
        message, field = (response.text.strip() or response.reason_phrase)[:300], None
    if status == 400:
        raise ValidationError(message.removeprefix(f"{field}: ") if field else message, field=field)
    if status in (401, 403):
        raise AuthError(message)
    raise ExternalServiceError(f"{SERVICE} answered {status}: {message}", service=SERVICE, status=status)
