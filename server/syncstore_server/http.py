"""Plain HTTP on the websocket's port: health, readiness, metrics, memory search.

websockets hands every request to ``process_request`` before the handshake;
these paths are answered there, so no second web framework is needed.

- ``/healthz``: the process is up (200).
- ``/readyz``: the database answers and the server is not shutting down (200),
  else 503: a load balancer sends new clients elsewhere.
- ``/metrics``: Prometheus text: the server's own figures and the fleet's
  executions and events (:mod:`syncstore_server.fleet_metrics`).
- ``GET /v1/memory/search?...``: semantic search over the caller's tenant's
  synced memories (:mod:`syncstore_server.memory_query` for the parameters,
  :mod:`syncstore_server.memory_search` for the search), with the websocket's
  bearer token in ``Authorization``; JSON in and out, errors as
  ``{"error": code, "field": name, "message": text}`` with 400 (bad request,
  naming the parameter), 401 (no or bad token), 403 (no scope to read),
  405 (not GET) or 503 (busy or database down; try again).

Any other path is a websocket upgrade; when the server is full or shutting down
it is refused with 503 before the handshake.
"""

from __future__ import annotations

import logging
import time
from http import HTTPStatus
from typing import Any, Callable

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from syncstore.core.server_session import READ_SCOPES
from syncstore.errors import AuthError, SyncError, ValidationError

from syncstore_server.auth import Secret, verify_token
from syncstore_server.fleet_metrics import DEFAULT_MAX_GROUPS, DEFAULT_TTL_S, DEFAULT_WINDOW_S, FleetMetrics
from syncstore_server.memory_index import DEFAULT_MAX_INDEXES, DEFAULT_MIN_ROWS
from syncstore_server.memory_query import DEFAULT_MAX_K, parse_search
from syncstore_server.memory_search import MemorySearch
from syncstore_server.metrics import CONTENT_TYPE, Metrics
from syncstore_server.store import ChangeStore

log = logging.getLogger("syncstore.server.http")

SEARCH_PATH = "/v1/memory/search"
JSON = "application/json"


class HttpSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The HTTP endpoints' settings (production defaults)."""

    search_pool_size: int = 2  # database connections for memory search (searches at once)
    search_wait_s: float = 5.0  # how long a search waits for one before "busy"
    search_timeout_s: float = 10.0  # statement timeout of a search
    search_max_k: int = DEFAULT_MAX_K
    hnsw: bool = True  # build and use HNSW indexes where pgvector is
    hnsw_min_rows: int = DEFAULT_MIN_ROWS  # a model with fewer live rows is searched exactly
    hnsw_max_indexes: int = DEFAULT_MAX_INDEXES
    fleet_window_s: float = DEFAULT_WINDOW_S  # the trailing window of the fleet figures
    fleet_ttl_s: float = DEFAULT_TTL_S  # the fleet figures are read at most this often
    fleet_max_groups: int = DEFAULT_MAX_GROUPS


class HttpEndpoints:
    """The answers to plain HTTP requests; :meth:`process_request` goes to
    ``websockets.serve``; :meth:`close` when the server stops."""

    def __init__(
        self,
        *,
        database_url: str,
        store: ChangeStore,
        metrics: Metrics,
        secret: Secret,
        accepting: Callable[[], bool],
        connections: Callable[[], int],
        max_connections: int,
        settings: HttpSettings | None = None,
    ):
        settings = settings or HttpSettings()
        self.settings = settings
        self._store = store
        self._metrics = metrics
        self._secret = secret
        self._accepting = accepting
        self._connections = connections
        self._max_connections = max_connections
        self.search = MemorySearch(
            database_url,
            pool_size=settings.search_pool_size,
            wait_s=settings.search_wait_s,
            statement_timeout_s=settings.search_timeout_s,
            max_k=settings.search_max_k,
            hnsw=settings.hnsw,
            hnsw_min_rows=settings.hnsw_min_rows,
            hnsw_max_indexes=settings.hnsw_max_indexes,
        )
        self.fleet = FleetMetrics(
            store.pool,
            window_s=settings.fleet_window_s,
            ttl_s=settings.fleet_ttl_s,
            max_groups=settings.fleet_max_groups,
            on_failure=metrics.fleet_refresh_failures.inc,
        )
        metrics.registry.register(self.fleet)

    async def close(self) -> None:
        self._metrics.registry.unregister(self.fleet)
        await self.search.close()

    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path, _, query = request.path.partition("?")
        if path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            return await self._ready(connection)
        if path == "/metrics":
            return await self._render_metrics(connection)
        if path == SEARCH_PATH:
            return await self._search(connection, request, query)
        if "upgrade" not in request.headers.get("Connection", "").lower():
            return connection.respond(
                HTTPStatus.NOT_FOUND, f"not found: try /healthz, /readyz, /metrics, {SEARCH_PATH} or a websocket\n"
            )
        if not self._accepting():
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "shutting down\n")
        if self._connections() >= self._max_connections:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections; try again later\n")
        return None

    async def _ready(self, connection: ServerConnection) -> Response:
        if not self._accepting():
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "shutting down\n")
        try:
            await self._store.ping()
        except Exception as exc:  # any failure means: not ready
            log.warning("readiness check failed: %s", type(exc).__name__)
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "database unreachable\n")
        return connection.respond(HTTPStatus.OK, "ready\n")

    async def _render_metrics(self, connection: ServerConnection) -> Response:
        try:
            stats = await self._store.log_stats()
            self._metrics.log_position.set(stats["position"])
            self._metrics.log_entries.set(stats["rows"])
        except Exception as exc:  # the other figures are still worth serving
            log.warning("log statistics unavailable: %s", type(exc).__name__)
        await self.fleet.refresh()  # at most once per fleet_ttl_s; never raises
        response = connection.respond(HTTPStatus.OK, self._metrics.render().decode())
        _set_type(response, CONTENT_TYPE)
        return response

    async def _search(self, connection: ServerConnection, request: Request, query: str) -> Response:
        started = time.perf_counter()
        outcome = "error"
        try:
            if getattr(request, "method", "GET") != "GET":  # websockets < 17 parses GET only
                response = _error(connection, HTTPStatus.METHOD_NOT_ALLOWED, "method_not_allowed", "use GET")
                response.headers["Allow"] = "GET"
                outcome = "bad_request"
                return response
            try:
                identity = verify_token(self._secret, _bearer(request))
            except AuthError as exc:
                outcome = "unauthorized"
                response = _error(connection, HTTPStatus.UNAUTHORIZED, "unauthorized", str(exc))
                response.headers["WWW-Authenticate"] = 'Bearer realm="syncstore"'
                return response
            if not identity.scopes & READ_SCOPES:
                outcome = "forbidden"
                return _error(
                    connection, HTTPStatus.FORBIDDEN, "forbidden",
                    f"the token may not read (it needs one of the scopes {', '.join(sorted(READ_SCOPES))})",
                )  # fmt: skip
            try:
                body = await self.search.search(identity.tenant, parse_search(query, max_k=self.settings.search_max_k))
            except ValidationError as exc:
                outcome = "bad_request"
                return _error(connection, HTTPStatus.BAD_REQUEST, "bad_request", str(exc), field=exc.field)
            except SyncError as exc:
                outcome = "unavailable"
                response = _error(connection, HTTPStatus.SERVICE_UNAVAILABLE, "unavailable", str(exc))
                response.headers["Retry-After"] = "1"
                return response
            outcome = body["strategy"]
            self._metrics.memory_search_seconds.observe(time.perf_counter() - started)
            return _json(connection, HTTPStatus.OK, body)
        except Exception:
            log.exception("memory search failed")
            return _error(
                connection, HTTPStatus.INTERNAL_SERVER_ERROR, "internal", "the search failed; see the server log"
            )
        finally:
            self._metrics.memory_searches.labels(outcome).inc()


def _bearer(request: Request) -> str:
    """The token of an ``Authorization: Bearer <token>`` header ('' if none)."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        raise AuthError("send the token as Authorization: Bearer <token>")
    return token.strip()


def _set_type(response: Response, content_type: str) -> None:
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = content_type


def _json(connection: ServerConnection, status: HTTPStatus, body: Any) -> Response:
    response = connection.respond(status, msgspec.json.encode(body).decode() + "\n")
    _set_type(response, JSON)
    response.headers["Cache-Control"] = "no-store"
    return response


def _error(
    connection: ServerConnection, status: HTTPStatus, code: str, message: str, *, field: str | None = None
) -> Response:
    body: dict[str, Any] = {"error": code, "message": message}
    if field is not None:
        body["field"] = field
    return _json(connection, status, body)
