"""The local console as an ASGI application: :func:`create_app`.

The pages are Starlette routes (one module per area under
:mod:`syncstore.console.pages`), each calling the library's public API on one
store and rendering a template. The gate (:mod:`.gate`) stands in front of
everything, the change feed (:mod:`.live`) drives the live regions through
``/events``, and :class:`~.syncing.SyncControl` keeps the store in sync when
a server is configured. Serving it is :func:`syncstore.console.serve.serve`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from syncstore.console import gate
from syncstore.console.live import ChangeFeed, MarkGeneration
from syncstore.console.pages import conflicts, environments, executions, memory, sync, tasks, workflows
from syncstore.console.syncing import Banner, SyncControl
from syncstore.console.templating import Templates, page_context, render
from syncstore.errors import NotFoundError, SyncstoreError
from syncstore.store import Store
from syncstore.sync import SyncStatus

log = logging.getLogger("syncstore.console")

KEEPALIVE = 15.0  # seconds between comments on a quiet event stream
LOCAL_HOSTS = ["127.0.0.1", "localhost"]  # the Host header of any other name is refused (DNS rebinding)

NAV = [
    ("tasks", "/tasks", "Tasks"),
    ("environments", "/environments", "Environments"),
    ("executions", "/executions", "Executions"),
    ("workflows", "/workflows", "Workflows"),
    ("memory", "/memory", "Memory"),
    ("conflicts", "/conflicts", "Conflicts"),
    ("sync", "/sync", "Sync"),
]


class Console:
    """What every page of one console shares: the store, its sync, the feed, the templates."""

    def __init__(self, store: Store, *, token: str, sync: SyncControl, poll_interval: float = 0.5):
        self.store = store
        self.sync = sync
        self.csrf_token = gate.csrf_token_for(token)
        self.feed = ChangeFeed(store, online=lambda: sync.online, poll_interval=poll_interval)
        self.templates = Templates(globals={"nav": NAV, "replica_path": store.path, "csrf_token": self.csrf_token})
        # Build the lazily made APIs now, on one thread: pages run on many.
        for name in ("tasks", "messages", "environments", "executions", "events", "workflows", "memory"):
            getattr(store, name)
        self._status_lock = threading.Lock()
        self._status: tuple[tuple[int, ...], SyncStatus] | None = None

    def sync_status(self) -> SyncStatus:
        """The store's sync status, read again only when something may have moved it.

        Counting the pending changes reads the whole unacknowledged log (tens of
        milliseconds for a replica offline with 100,000 changes), and every page
        shows the banner. What the status is made of changes only with a commit
        here (the feed's generation moves), a commit by another connection
        (SQLite's data_version moves), a local write (the last sequence number
        moves) or the connection coming up or down, so those are the cache's key.
        """
        key = (
            self.feed.generation,
            self.store.query("pragma data_version")[0]["data_version"],
            self.store.last_seq(),
            int(self.sync.online),
            int(self.sync.running),
        )
        with self._status_lock:
            if self._status is not None and self._status[0] == key:
                return self._status[1]
        status = self.store.sync_status()  # read after the key: never older than it
        with self._status_lock:
            self._status = (key, status)
        return status

    def banner(self) -> Banner:
        return self.sync.banner(self.sync_status())


def create_app(
    store: Store,
    *,
    token: str,
    sync_url: str | None = None,
    sync_token: str | None = None,
    poll_interval: float = 0.5,
    allowed_hosts: list[str] | None = None,
) -> Starlette:
    """The console over ``store``: every request needs ``token`` (see :mod:`.gate`).
    With ``sync_url`` and ``sync_token`` the store syncs in the background while
    the app runs. The app starts and stops the sync and the change feed with
    its lifespan; the store stays the caller's to close."""
    control = SyncControl(store, url=sync_url, token=sync_token, poll_interval=poll_interval)
    console = Console(store, token=token, sync=control, poll_interval=poll_interval)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        console.feed.start()
        control.start()
        try:
            yield
        finally:
            control.stop()
            console.feed.stop()

    routes = [
        Route("/", home),
        Route("/events", events),
        Route("/_/banner", banner),
        *tasks.routes,
        *environments.routes,
        *executions.routes,
        *workflows.routes,
        *memory.routes,
        *conflicts.routes,
        *sync.routes,
        Mount("/static", app=StaticFiles(packages=[("syncstore.console", "static")]), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[
            Middleware(gate.SecurityHeaders),
            Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or LOCAL_HOSTS),
            Middleware(gate.TokenGate, token=token),
            Middleware(MarkGeneration, feed=console.feed),
        ],
        exception_handlers={SyncstoreError: library_error, 404: not_found},
    )
    app.state.console = console
    return app


def home(request: Request) -> Response:
    return RedirectResponse(request.scope.get("root_path", "") + "/tasks", status_code=303)


def banner(request: Request) -> Response:
    return render(request, "_banner.html", {"banner": request.app.state.console.banner()})


async def events(request: Request) -> Response:
    """The page's stream of change names (server-sent events, one event per name)."""
    feed: ChangeFeed = request.app.state.console.feed
    try:
        since: int | None = int(request.query_params.get("since", ""))
    except ValueError:
        since = None
    listener = feed.listen(since)

    async def stream() -> AsyncIterator[str]:
        try:
            yield "retry: 1000\n\n"
            while True:
                names = await listener.next(KEEPALIVE)
                if not names:
                    yield ": keepalive\n\n"
                    continue
                await asyncio.sleep(0.05)  # let a burst of commits arrive as one refresh
                names |= await listener.next(0)
                yield "".join(f"event: {name}\ndata: {name}\n\n" for name in sorted(names))
        finally:
            feed.forget(listener)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"x-accel-buffering": "no"})


async def library_error(request: Request, exc: Exception) -> Response:
    """A refused request: one clear sentence, and nothing was changed."""
    status = 404 if isinstance(exc, NotFoundError) else 400
    return _error_page(request, status, str(exc))


async def not_found(request: Request, exc: Exception) -> Response:
    return _error_page(request, 404, "no such page")


def _error_page(request: Request, status: int, message: str) -> Response:
    console: Console = request.app.state.console
    try:
        context = {**page_context(request), "banner": console.banner(), "status": status, "message": message}
        text = console.templates.render("error.html", context)
    except Exception:  # the page must still say what went wrong
        log.exception("the error page could not be drawn")
        return Response(message, status_code=status, media_type="text/plain")
    return HTMLResponse(text, status_code=status)
