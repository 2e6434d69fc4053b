"""``syncstore sync ...`` and ``syncstore conflicts ...``: the client side of sync.

The token comes from ``--token`` or ``SYNCSTORE_TOKEN`` and is never printed.
"""

from __future__ import annotations

import datetime as dt
import signal
import threading
from typing import Any

import click
import msgspec

import syncstore
from syncstore.cli.common import json_option, with_store
from syncstore.cli.output import emit_json, fail, table
from syncstore.core.hlc import from_ms as hlc_from_ms
from syncstore.core.hlc import unpack
from syncstore.sync import conflicts as cf
from syncstore.sync.restamp import restamp_pending

_STATUS_FIELDS = ("connected", "pending_changes", "pending_resolutions", "acked_seq", "cursor", "last_error")


# --- sync -------------------------------------------------------------------------


@click.group(invoke_without_command=True)
@click.option("--url", envvar="SYNCSTORE_URL", help="The sync server, ws://host:port (or set SYNCSTORE_URL).")
@click.option("--token", envvar="SYNCSTORE_TOKEN", help="Your access token (or set SYNCSTORE_TOKEN).")
@click.option("--once", "mode", flag_value="once", default=True, help="One round: push, pull until up to date (default).")
@click.option("--watch", "mode", flag_value="watch", help="Keep syncing until interrupted, reconnecting as needed.")
@click.option("--timeout", type=click.FloatRange(min=0.1), default=60.0, show_default=True, help="Seconds one round may take.")
@json_option
@click.pass_context
def sync(ctx: click.Context, url: str | None, token: str | None, mode: str, timeout: float, as_json: bool) -> None:
    """Sync this replica with a sync server (see also: sync status, sync rejected)."""
    if ctx.invoked_subcommand is not None:
        return
    if not url:
        fail("give the server with --url or SYNCSTORE_URL")
    if not token:
        fail("give a token with --token or SYNCSTORE_TOKEN")
    store = ctx.obj.store()
    if mode == "once":
        result = store.sync(url, token=token, timeout=timeout)
        if as_json:
            emit_json(result)
            return
        click.echo(
            f"synced: {result.pushed} changes pushed, {result.received} server transactions applied, "
            f"{result.conflicts} conflicts, {result.rejected} rejected; acked {result.acked_seq}, cursor {result.cursor}"
        )
        if result.rejected:
            click.echo("some pushes were rejected: see `syncstore sync rejected`")
        return
    _watch(store, url, token, as_json)


def _watch(store: syncstore.Store, url: str, token: str, as_json: bool) -> None:
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    handle = store.start_sync(url, token=token)
    last: tuple[Any, ...] | None = None
    try:
        while not stop.is_set() and handle.running:
            status = store.sync_status()
            shown = tuple(getattr(status, f) for f in _STATUS_FIELDS)
            if shown != last:
                last = shown
                if as_json:
                    emit_json(status)
                else:
                    click.echo(", ".join(f"{f} {v}" for f, v in zip(_STATUS_FIELDS, shown) if v is not None))
            stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
        signal.signal(signal.SIGTERM, previous)
    final = store.sync_status()
    if as_json:
        emit_json(final)
    else:
        click.echo(f"stopped: {final.pending_changes} changes pending, acked {final.acked_seq}, cursor {final.cursor}")
    if handle.error is not None:
        fail(handle.stopped or f"sync stopped: {handle.error}")


@sync.command("status")
@json_option
@with_store
def sync_status(store: syncstore.Store, as_json: bool) -> None:
    """Where this replica stands with the server."""
    status = store.sync_status()
    if as_json:
        emit_json(status)
        return
    echo_status(msgspec.to_builtins(status))


def echo_status(status: dict[str, Any]) -> None:
    """The sync lines of ``syncstore status`` and ``syncstore sync status``."""
    tenant = status["tenant"] or "(never synced)"
    click.echo(f"sync      tenant {tenant}, {'connected' if status['connected'] else 'not connected'}")
    if status.get("stopped"):
        click.echo(f"          {status['stopped']}")
    resolutions = status.get("pending_resolutions", 0)
    click.echo(
        f"          {status['pending_changes']} changes pending"
        + (f", {resolutions} conflict resolutions not yet reported" if resolutions else "")
        + f", acked up to {status['acked_seq']} of {status['last_seq']}, cursor {status['cursor']}"
    )
    if status.get("clock_ahead_ms"):
        click.echo(
            f"          clock {status['clock_ahead_ms'] / 1000:.1f} s ahead of the server's (it accepts "
            f"{status['max_drift_ms'] / 1000:g} s): local writes are refused and pending changes wait; "
            f"correct this machine's clock, then: syncstore sync restamp"
        )
    if status["last_synced_at"]:
        click.echo(f"          last up to date {status['last_synced_at']}")
    if status["last_error"]:
        click.echo(f"          last error {status['last_error']} ({status['last_error_at']})")
    if status["rejected"]:
        click.echo(f"          {status['rejected']} pushes rejected by the server: syncstore sync rejected")
    if status.get("reverting"):
        click.echo(f"          {status['reverting']} rejected pushes not yet undone here (the next connection does)")
    if status.get("schema_notice"):
        click.echo(f"          {status['schema_notice']}")
    if status["open_conflicts"]:
        click.echo(f"          {status['open_conflicts']} open conflicts: syncstore conflicts list")


@sync.command("restamp")
@json_option
@with_store
def restamp(store: syncstore.Store, as_json: bool) -> None:
    """Re-stamp the changes this replica stamped while its clock ran ahead.

    Changes stamped further ahead of the sync server's time than it accepts
    wait in the change log, and local writes are refused meanwhile. Correct
    this machine's clock, then run this: those changes get new stamps from it
    (rows, change log and conflict checks alike) and go out with the next sync.
    """
    done = restamp_pending(store)
    if as_json:
        emit_json(done)
        return
    if not done.changes:
        click.echo(f"nothing to re-stamp: no change is stamped past {_when(hlc_from_ms(done.limit_ms))}")
    else:
        click.echo(
            f"re-stamped {done.changes} changes ({done.pending} not yet synced) on {done.rows} rows; "
            f"they go out with the next sync"
        )
    click.echo(f"clock {_when(done.clock_before)} -> {_when(done.clock_after)}")


@sync.command("rejected")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
@with_store
def rejected(store: syncstore.Store, limit: int, as_json: bool) -> None:
    """Local transactions the server refused for good, and why."""
    found = cf.list_rejected(store, limit=limit)
    if as_json:
        emit_json(found)
        return
    rows = []
    for r in found:
        rows.append((
            r.tx, r.code, r.message[:80], ", ".join(sorted({f"{c.table} {c.id}" for c in r.changes}))[:80],
            r.rejected_at, r.reverted_at or "not yet",
        ))  # fmt: skip
    table(None, ["tx", "code", "message", "rows", "rejected at", "undone here"], rows)


# --- conflicts ------------------------------------------------------------------


@click.group()
def conflicts() -> None:
    """Concurrent edits the server resolved by last-write-wins: list, show, resolve."""


@conflicts.command("list")
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved conflicts.")
@click.option("--table", "table_name", help="Only this table.")
@click.option("--row", "row_id", help="Only this row.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
@with_store
def list_(store: syncstore.Store, include_resolved: bool, table_name: str | None, row_id: str | None, limit: int, as_json: bool) -> None:
    """Conflict records for this tenant's rows, newest first (open ones unless --all)."""
    found = cf.list_conflicts(store, include_resolved=include_resolved, table=table_name, row_id=row_id, limit=limit)
    if as_json:
        emit_json(found)
        return
    table(
        None,
        ["id", "table", "row", "column", "winner", "loser", "state"],
        (
            (c.id, c.table, c.row_id, c.column, _short(c.winner_value), _short(c.loser_value), _state(c))
            for c in found
        ),
    )


@conflicts.command("show")
@click.argument("conflict_id")
@json_option
@with_store
def show(store: syncstore.Store, conflict_id: str, as_json: bool) -> None:
    """One conflict record in full (an unambiguous prefix of the id will do)."""
    record = cf.get_conflict(store, conflict_id)
    if as_json:
        emit_json(record)
        return
    _echo_record(record)


@conflicts.command("resolve")
@click.argument("conflict_id")
@click.option("--keep", type=click.Choice(cf.KEEP), help="Keep the winner's or the loser's value.")
@click.option("--value", "value_json", help="Write this value instead (JSON: '\"text\"', 3, true, {\"a\": 1}).")
@json_option
@with_store
def resolve(store: syncstore.Store, conflict_id: str, keep: str | None, value_json: str | None, as_json: bool) -> None:
    """Settle a conflict with a new write of the chosen value (it syncs like any edit)."""
    if (keep is None) == (value_json is None):
        fail("give exactly one of --keep winner|loser or --value JSON")
    if value_json is not None:
        try:
            value = msgspec.json.decode(value_json)
        except msgspec.DecodeError as exc:
            fail(f"--value is not JSON ({exc}); quote text as '\"text\"'")
        record = cf.resolve_conflict(store, conflict_id, value=value)
    else:
        record = cf.resolve_conflict(store, conflict_id, keep=keep)
    if as_json:
        emit_json(record)
        return
    click.echo(f"resolved {record.id} ({record.resolution}); the new value syncs with the next `syncstore sync`")


def _state(c: cf.LocalConflict) -> str:
    if c.resolved_at is None:
        return "open"
    return f"resolved ({c.resolution})" + ("" if c.reported else ", server not told yet")


def _short(value: Any, width: int = 30) -> str:
    text = value.hex() if isinstance(value, bytes) else repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _when(stamp: int) -> str:
    ms, counter = unpack(stamp)
    moment = dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{moment} #{counter}"


def _echo_record(c: cf.LocalConflict) -> None:
    click.echo(f"id           {c.id}")
    click.echo(f"row          {c.table} {c.row_id}")
    click.echo(f"column       {c.column}")
    click.echo(f"winner       {_short(c.winner_value, 200)}")
    click.echo(f"  written    {_when(c.winner_hlc)} by site {c.winner_site.hex()}")
    click.echo(f"loser        {_short(c.loser_value, 200)}")
    click.echo(f"  written    {_when(c.loser_hlc)} by site {c.loser_site.hex()}")
    click.echo(f"arrived last {'the winner' if c.incoming_won else 'the loser'}")
    click.echo(f"recorded     {c.created_at} (server log position {c.server_seq})")
    click.echo(f"state        {_state(c)}" + (f" at {c.resolved_at}" if c.resolved_at else ""))
