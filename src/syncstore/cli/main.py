"""The root command group: ``syncstore`` (the console script), and the one
place where the command groups are added to it.

Every command takes the replica from ``--db`` (or ``SYNCSTORE_DB``), prints a
table for people or JSON with ``--json``, and turns a syncstore error into one
line on stderr and exit status 1 (see :mod:`.common`).
"""

from __future__ import annotations

import click

import syncstore
from syncstore.cli.common import DEFAULT_DB, Context, SyncstoreGroup
from syncstore.replica.connection import DEFAULT_BUSY_TIMEOUT_MS


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
    # Each command group lives in its own module beside this one. They import
    # only .common and .output (never this module), so any can be imported first.
    from syncstore.cli import (
        basics,
        debug,
        environments,
        events,
        executions,
        legacy,
        memory,
        server,
        sync,
        tasks,
        ui,
        workflows,
    )

    for command in (
        basics.status,
        basics.doctor,
        basics.migrate,
        tasks.tasks,
        environments.environments,
        executions.executions,
        events.events,
        sync.sync,
        sync.conflicts,
        legacy.import_group,
        server.server,
        workflows.workflows,
        debug.debug,
        memory.memory,
        ui.ui,
    ):
        cli.add_command(command)


_register()

if __name__ == "__main__":  # python -m syncstore.cli.main
    cli(prog_name="syncstore")
