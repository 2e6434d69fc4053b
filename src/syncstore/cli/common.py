"""What every command module shares: the per-invocation context, the root
group's class, and the ``--json`` and store-passing decorators.

Command modules import from here (and from :mod:`.output`), never from
:mod:`.main`, so any of them can be imported first.
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
    """The root options of one invocation, and the store opened for it on first use."""

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
