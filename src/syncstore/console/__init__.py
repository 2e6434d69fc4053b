"""The local web console over one replica: ``syncstore ui``.

    from syncstore.console import create_app, serve
    serve("agent.db")                     # prints http://127.0.0.1:PORT/?token=...

Server-rendered pages (Starlette, Jinja2 with autoescaping), live through
server-sent events from the replica's change notifications, with htmx and
its SSE extension vendored under ``static/vendor`` (nothing is fetched from
anywhere: the console works offline). Modules, one job each: :mod:`.app`
(the ASGI app), :mod:`.gate` (token, CSRF, headers), :mod:`.live` (the change
feed), :mod:`.syncing` (background sync and "sync now"), :mod:`.templating`,
:mod:`.charts` (SVG geometry), :mod:`.forms`, :mod:`.serve` (uvicorn),
:mod:`.pages` (one module per area). Needs the ``ui`` extra. See docs/console.md.
"""

from syncstore.console.app import create_app
from syncstore.console.serve import serve

__all__ = ["create_app", "serve"]
