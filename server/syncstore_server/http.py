"""Plain HTTP on the websocket's port: health, readiness and metrics.

websockets hands every request to ``process_request`` before the handshake;
these paths are answered there, so no second web framework is needed.

- ``/healthz``: the process is up (200).
- ``/readyz``: the database answers and the server is not shutting down (200),
  else 503: a load balancer sends new clients elsewhere.
- ``/metrics``: Prometheus text.

Any other path is a websocket upgrade; when the server is full or shutting down
it is refused with 503 before the handshake.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Awaitable, Callable

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from syncstore_server.metrics import CONTENT_TYPE, Metrics
from syncstore_server.store import ChangeStore

log = logging.getLogger("syncstore.server.http")


def make_process_request(
    *,
    store: ChangeStore,
    metrics: Metrics,
    accepting: Callable[[], bool],
    connections: Callable[[], int],
    max_connections: int,
) -> Callable[[ServerConnection, Request], Awaitable[Response | None]]:
    async def process_request(connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            if not accepting():
                return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "shutting down\n")
            try:
                await store.ping()
            except Exception as exc:  # any failure means: not ready
                log.warning("readiness check failed: %s", type(exc).__name__)
                return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "database unreachable\n")
            return connection.respond(HTTPStatus.OK, "ready\n")
        if path == "/metrics":
            try:
                stats = await store.log_stats()
                metrics.log_position.set(stats["position"])
                metrics.log_entries.set(stats["rows"])
            except Exception as exc:  # the other figures are still worth serving
                log.warning("log statistics unavailable: %s", type(exc).__name__)
            response = connection.respond(HTTPStatus.OK, metrics.render().decode())
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = CONTENT_TYPE
            return response
        if "upgrade" not in request.headers.get("Connection", "").lower():
            return connection.respond(HTTPStatus.NOT_FOUND, "not found: try /healthz, /readyz, /metrics or a websocket\n")
        if not accepting():
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "shutting down\n")
        if connections() >= max_connections:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections; try again later\n")
        return None

    return process_request
