"""The root command group and what every command shares.

Every command takes the replica from ``--db`` (or ``SYNCSTORE_DB``), prints a
table for people or JSON with ``--json``, and turns a syncstore error into one
line on stderr and exit status 1.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import click

import syncstore
from syncstore.errors import SyncstoreError
from syncstore.replica.connection import DEFAULT_BUSY_TIMEOUT_MS

DEFAULT_DB = "syncstore.db"


class Context:
    def __init__(self, db: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS):
        self.db = db
        self.busy_timeout_ms = busy_timeout_ms
        self._store: syncstore.Store | None = None

    def store(self) -> syncstore.Store:
        if self._store is None:
            self._store = syncstore.open(self.db, busy_timeout_ms=self.busy_timeout_ms)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


class SyncstoreGroup(click.Group):
    """Turns library errors into one clear line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SyncstoreError as exc:
            # One line, whatever the message holds, so scripts can read it.
            click.echo("error: " + " ".join(str(exc).split()), err=True)
            ctx.exit(1)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--json`` on a read command."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(fn)


def with_store(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Pass the opened store as the first argument."""

    @click.pass_obj
    @functools.wraps(fn)
    def wrapper(obj: Context, *args: Any, **kwargs: Any) -> Any:
        return fn(obj.store(), *args, **kwargs)

    return wrapper


@click.group(cls=SyncstoreGroup)
@click.option(
    "--db",
    envvar="SYNCSTORE_DB",
    default=DEFAULT_DB,
    show_default=True,
    help="The replica file (or set SYNCSTORE_DB).",
)
@click.option(
    "--busy-timeout",
    "busy_timeout_ms",
    envvar="SYNCSTORE_BUSY_TIMEOUT_MS",
    type=click.IntRange(min=0),
    default=DEFAULT_BUSY_TIMEOUT_MS,
    show_default=True,
    help="Milliseconds to wait for another process's write before giving up (or set SYNCSTORE_BUSY_TIMEOUT_MS).",
)
@click.version_option(syncstore.__version__, prog_name="syncstore")
@click.pass_context
def cli(ctx: click.Context, db: str, busy_timeout_ms: int) -> None:
    """syncstore: an offline-first sync store for AI agents."""
    ctx.obj = Context(db, busy_timeout_ms=busy_timeout_ms)
    ctx.call_on_close(ctx.obj.close)


def _register() -> None:
    # Each command group lives in its own module beside this one.
    from syncstore.cli import basics, environments, tasks

    cli.add_command(basics.status)
    cli.add_command(basics.doctor)
    cli.add_command(basics.migrate)
    cli.add_command(tasks.tasks)
    cli.add_command(environments.environments)
    from syncstore.cli import events, executions  # noqa: E402 - beside the others, by its own line

    cli.add_command(executions.executions)
    cli.add_command(events.events)
    from syncstore.cli import sync  # noqa: E402 - beside the others, by its own line

    cli.add_command(sync.sync)
    cli.add_command(sync.conflicts)
    from syncstore.cli import legacy  # noqa: E402 - beside the others, by its own line

    cli.add_command(legacy.import_group)
    from syncstore.cli import server  # noqa: E402 - beside the others, by its own line

    cli.add_command(server.server)
    from syncstore.cli import debug, workflows  # noqa: E402 - beside the others, by its own line

    cli.add_command(workflows.workflows)
    cli.add_command(debug.debug)
    from syncstore.cli import memory  # noqa: E402 - beside the others, by its own line

    cli.add_command(memory.memory)


_register()
