"""The local web console over one replica: ``syncstore ui``.

    from syncstore.console import ConsoleServer, serve
    serve("agent.db")                     # syncstore ui: prints http://127.0.0.1:PORT/?token=...
    console = ConsoleServer(store, port=0).start()   # or inside a program, in the background
    print(console.url); ...; console.stop()

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
from syncstore.console.serve import ConsoleServer, serve

__all__ = ["ConsoleServer", "create_app", "serve"]
