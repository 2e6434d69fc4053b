"""Sync: where the replica stands with its server, the pushes it refused, and "sync now"."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncstore.console.pages.common import store_of
from syncstore.console.templating import render
from syncstore.errors import AuthError, SyncError
from syncstore.store import Store
from syncstore.sync import SyncStatus
from syncstore.sync import conflicts as cf

REJECTED_SHOWN = 100


def sync_state(store: Store, status: SyncStatus | None = None) -> dict[str, Any]:
    """The library reads behind the sync page: the status (unless the console has it
    already, see ``Console.sync_status``) and the refused pushes."""
    return {"status": status or store.sync_status(), "rejected": cf.list_rejected(store, limit=REJECTED_SHOWN)}


def status_page(request: Request) -> Response:
    return _page(request, message=None, failed=False)


def sync_now(request: Request) -> Response:
    """One push and pull now; the page then says how it went (a failure changes nothing)."""
    control = request.app.state.console.sync
    if not control.configured:
        message = "no sync server is configured: start `syncstore ui` with --url and --token"
        return _page(request, message=message, failed=True, status=400)
    try:
        message, failed = control.sync_now(), False
    except (SyncError, AuthError) as exc:
        message, failed = str(exc), True
    return _page(request, message=message, failed=failed, status=502 if failed else 200)


def _page(request: Request, *, message: str | None, failed: bool, status: int = 200) -> Response:
    control = request.app.state.console.sync
    context = {
        **sync_state(store_of(request), request.app.state.console.sync_status()),
        "active": "sync",
        "control": control,
        "message": message,
        "failed": failed,
    }
    return render(request, "sync/status.html", context, status=status)


routes = [
    Route("/sync", status_page, methods=["GET"]),
    Route("/sync/now", sync_now, methods=["POST"]),
]
