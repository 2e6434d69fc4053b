"""``syncstore ui``: the local web console over the replica (see docs/console.md)."""

from __future__ import annotations

import click

from syncstore.cli.common import Context
from syncstore.cli.output import fail


@click.command("ui")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=8780, show_default=True, help="Port on 127.0.0.1 (0: any free port).")
@click.option("--url", envvar="SYNCSTORE_URL", help="A sync server to keep the replica in sync with, ws://host:port (or set SYNCSTORE_URL).")
@click.option("--token", envvar="SYNCSTORE_TOKEN", help="The sync server's access token (or set SYNCSTORE_TOKEN); never shown.")
@click.pass_obj
def ui(obj: Context, port: int, url: str | None, token: str | None) -> None:
    """Serve a web console over this replica on 127.0.0.1 until interrupted.

    Prints the address to open, with a new random token in it: the console
    refuses every request without that token. Works offline; with --url and
    --token it also keeps the replica in sync while it runs.
    """
    try:
        from syncstore.console import serve
    except ImportError as exc:
        fail(f"the console needs the 'ui' extra: pip install 'syncstore[ui]' ({exc.name} is missing)")
    if (url is None) != (token is None):
        fail("give both --url and --token (or SYNCSTORE_URL and SYNCSTORE_TOKEN) to sync, or neither")
    try:
        serve(obj.db, port=port, sync_url=url, sync_token=token, busy_timeout_ms=obj.busy_timeout_ms)
    except OSError as exc:
        fail(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        pass
