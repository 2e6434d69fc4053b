"""The console mounted under a prefix of another Starlette app (as the sync
server's HTTP app will mount its pages): every link, form and redirect stays
under the prefix."""

from __future__ import annotations

import contextlib
import re
import threading
import time

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from syncstore.console import create_app
from syncstore.console.gate import csrf_token_for
from syncstore.console.serve import bind, new_token


def test_the_console_works_under_a_prefix(store):
    token = new_token()
    console = create_app(store, token=token)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with console.router.lifespan_context(console):  # the mounted app's feed and sync
            yield

    outer = Starlette(
        routes=[Route("/healthz", lambda request: PlainTextResponse("ok")), Mount("/console", app=console)],
        lifespan=lifespan,
    )
    sock = bind(0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(outer, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            assert client.get("/healthz").text == "ok"
            assert client.get("/console/tasks").status_code == 403
            signed = client.get("/console/", params={"token": token})
            assert signed.status_code == 303 and signed.headers["location"] == "/console/"
            home = client.get("/console/")
            assert home.headers["location"] == "/console/tasks"
            page = client.get("/console/tasks").text
            links = re.findall(r'(?:href|action|src|hx-get|sse-connect)="([^"]+)"', page)
            assert links and all(link.startswith("/console/") for link in links), links
            assert client.get("/console/static/console.css").status_code == 200
            created = client.post("/console/tasks", data={"title": "mounted", "csrf_token": csrf_token_for(token)})
            assert created.status_code == 303
            (task,) = store.tasks.list()
            assert created.headers["location"] == f"/console/tasks/{task.id}"
            assert "mounted" in client.get(created.headers["location"]).text
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
