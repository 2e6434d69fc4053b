"""``syncstore server ...``: run the sync server and look after its database.

``syncstore server`` alone runs the daemon (as ``syncstore server run`` does).
Without ``--database-url`` every command uses the embedded PostgreSQL in
``--data-dir``. Each command calls one function of ``syncstore_server``.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable

import click

from syncstore.cli.common import json_option
from syncstore.cli.output import emit_json, table
from syncstore.errors import CapabilityError

DEFAULT_DATA_DIR = "./syncstore-data"
_TTL = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _server() -> Any:
    try:
        import syncstore_server
        import syncstore_server.admin
    except ImportError as exc:
        raise CapabilityError(f"the sync server is not installed ({exc.name}): pip install 'syncstore[server]'") from None
    return syncstore_server


def _database_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        show_default=True,
        help="Where the embedded PostgreSQL lives when no --database-url is given.",
    )(fn)
    return click.option(
        "--database-url",
        envvar="SYNCSTORE_DATABASE_URL",
        help="PostgreSQL to use (or set SYNCSTORE_DATABASE_URL); default: the embedded one.",
    )(fn)


def _secret_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--dev",
        is_flag=True,
        help="Development mode: without a secret, use the well-known development secret. Never in production.",
    )(fn)
    return click.option(
        "--secret-file",
        type=click.Path(dir_okay=False),
        help="File holding the token signing secret (else SYNCSTORE_SECRET).",
    )(fn)


def _run_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on."),
        click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True),
        click.option("--max-frame", type=click.IntRange(min=1024), default=4 * 1024 * 1024, show_default=True,
                     help="Largest websocket message accepted, in bytes."),
        click.option("--max-batch", type=click.IntRange(min=1), default=5000, show_default=True,
                     help="Most changes in one push of several transactions."),
        click.option("--max-staged-changes", type=click.IntRange(min=1), default=1_000_000, show_default=True,
                     help="Most changes in one transaction pushed in parts (larger ones are refused)."),
        click.option("--max-connections", type=click.IntRange(min=1), default=1000, show_default=True),
        click.option("--idle-timeout", type=click.FloatRange(min=1), default=120.0, show_default=True,
                     help="Seconds without a message before a client is pinged, then dropped."),
        click.option("--max-drift-ms", type=click.IntRange(min=0), default=60_000, show_default=True,
                     help="How far in the future a change's clock may be."),
        click.option("--pool-size", type=click.IntRange(min=2), default=10, show_default=True,
                     help="Database connections per process."),
        click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
                     show_default=True),
        click.option("--max-queue", type=click.IntRange(min=65536), default=8 * 1024 * 1024, show_default=True,
                     help="Bytes queued for one live client before it is dropped (it catches up by cursor)."),
        click.option("--compact-every", default=None, metavar="DURATION",
                     help="Compact the change log this often (e.g. 1h, 30m); default: never (use `compact`)."),
        click.option("--retention", default="7d", show_default=True, metavar="DURATION",
                     help="Keep tombstones (and the log a client needs to catch up) this long."),
        click.option("--snapshot-rows", type=click.IntRange(min=1), default=2000, show_default=True,
                     help="Rows per snapshot chunk sent to a bootstrapping client (fewer when they are large)."),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return _secret_options(_database_options(fn))


def _serve(
    database_url: str | None,
    data_dir: str,
    secret_file: str | None,
    dev: bool,
    log_level: str,
    idle_timeout: float,
    max_drift_ms: int,
    compact_every: str | None = None,
    retention: str = "7d",
    **options: Any,
) -> None:
    server = _server()
    options["retention_s"] = _parse_duration(retention, "--retention")
    if compact_every:
        options["compact_interval_s"] = _parse_duration(compact_every, "--compact-every")
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # websockets dumps frames at debug level, and a Hello frame carries a token.
    logging.getLogger("websockets").setLevel(max(logging.INFO, logging.getLogger().level))
    secret = server.load_secret(secret_file=secret_file, dev=dev)
    if secret.source == "development mode":
        click.echo("warning: development mode: tokens are signed with a well-known secret", err=True)
    server.run(
        database_url=database_url,
        data_dir=data_dir,
        secret=secret,
        idle_timeout_s=idle_timeout,
        max_drift_ms=max_drift_ms,
        **options,
    )


@click.group(invoke_without_command=True)
@_run_options
@click.pass_context
def server(ctx: click.Context, **options: Any) -> None:
    """Run the sync server (the default) and look after its database."""
    if ctx.invoked_subcommand is None:
        _serve(**options)


@server.command("run")
@_run_options
def run(**options: Any) -> None:
    """Run the sync server until SIGTERM or Ctrl-C (then it drains and stops)."""
    _serve(**options)


def _parse_duration(text: str, option: str) -> int:
    found = _TTL.match(text.strip().lower())
    if not found:
        raise click.BadParameter("a duration like 3600, 90m, 12h or 7d", param_hint=option)
    return int(found[1]) * _UNITS[found[2]]


def _parse_ttl(text: str) -> int | None:
    if text.lower() == "never":
        return None
    found = _TTL.match(text.strip().lower())
    if not found or int(found[1]) == 0:
        raise click.BadParameter("a lifetime like 3600, 90m, 12h, 30d, or never")
    return int(found[1]) * _UNITS[found[2]]


@server.command("token")
@click.option("--tenant", required=True, help="The tenant the token writes and reads as.")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(["sync", "read", "admin"]),
              help="What the token may do (repeatable; default: sync).")  # fmt: skip
@click.option("--ttl", default="30d", show_default=True, help="Lifetime: seconds, or 90m, 12h, 30d, or never.")
@click.option("--subject", help="Who the token is for (recorded in the token).")
@_secret_options
def token(tenant: str, scopes: tuple[str, ...], ttl: str, subject: str | None, secret_file: str | None, dev: bool) -> None:
    """Mint a signed token for a tenant; prints it."""
    server_mod = _server()
    secret = server_mod.load_secret(secret_file=secret_file, dev=dev)
    click.echo(
        server_mod.mint_token(secret, tenant=tenant, scopes=scopes or ("sync",), ttl_s=_parse_ttl(ttl), subject=subject)
    )


def _database(database_url: str | None, data_dir: str) -> Any:
    from syncstore_server.embedded import database

    _server()
    return database(database_url, data_dir=data_dir)


@server.command("migrate")
@click.option("--to", "target", type=click.IntRange(min=0), help="Migrate up or down to this version (default: latest).")
@_database_options
@json_option
def migrate(target: int | None, database_url: str | None, data_dir: str, as_json: bool) -> None:
    """Apply the server schema migrations (or undo them down to --to)."""
    with _database(database_url, data_dir) as url:
        result = _server().admin.apply_migrations(url, target=target)
    if as_json:
        emit_json(result)
    elif result["steps"]:
        click.echo(f"server schema {result['from']} -> {result['to']}: {result['direction']} {', '.join(result['steps'])}")
    else:
        click.echo(f"server schema at version {result['to']}: nothing to do")


@server.command("status")
@_database_options
@json_option
def status(database_url: str | None, data_dir: str, as_json: bool) -> None:
    """Schema version, change log, sites, conflicts and rejections."""
    with _database(database_url, data_dir) as url:
        found = _server().admin.status(url)
    if as_json:
        emit_json(found)
        return
    table(None, ["", ""], ((key, ", ".join(v) if isinstance(v, list) else v) for key, v in found.items()))


@server.command("compact")
@click.option("--retention", default="7d", show_default=True, metavar="DURATION",
              help="Keep tombstones this long (0 collects every tombstone now).")  # fmt: skip
@click.option("--tenant", help="Only this tenant's log (default: every tenant).")
@_database_options
@json_option
def compact(retention: str, tenant: str | None, database_url: str | None, data_dir: str, as_json: bool) -> None:
    """Compact the change log: drop superseded versions, collect old tombstones."""
    retention_s = _parse_duration(retention, "--retention")
    with _database(database_url, data_dir) as url:
        found = _server().admin.compact(url, retention_s=retention_s, tenant=tenant)
    if as_json:
        emit_json(found)
        return
    table(
        None,
        ["tenant", "entries", "rewritten", "deleted", "cells dropped", "rows collected", "oldest"],
        ((r["tenant"], r["entries_seen"], r["entries_rewritten"], r["entries_deleted"], r["cells_dropped"],
          r["rows_collected"], r["oldest"]) for r in found),
    )  # fmt: skip


@server.command("rejections")
@click.option("--tenant")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@_database_options
@json_option
def rejections(tenant: str | None, limit: int, database_url: str | None, data_dir: str, as_json: bool) -> None:
    """Pushed transactions the server refused for good, newest first."""
    with _database(database_url, data_dir) as url:
        found = _server().admin.rejections(url, tenant=tenant, limit=limit)
    if as_json:
        emit_json(found)
        return
    table(None, ["id", "tenant", "site", "tx", "code", "message"],
          ((r["id"], r["tenant"], r["site"].hex()[:8], r["tx"], r["code"], r["message"][:80]) for r in found))  # fmt: skip


@server.group("conflicts")
def conflicts() -> None:
    """Conflict records of every tenant: list, show, resolve."""


@conflicts.command("list")
@click.option("--tenant")
@click.option("--table")
@click.option("--row", "row_id", help="Only this row id.")
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved records.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@_database_options
@json_option
def conflicts_list(database_url: str | None, data_dir: str, as_json: bool, **filters: Any) -> None:
    """Conflict records, newest first (unresolved only, unless --all)."""
    with _database(database_url, data_dir) as url:
        found = _server().admin.list_conflicts(url, **filters)
    if as_json:
        emit_json([c.to_dict() for c in found])
        return
    table(
        None,
        ["id", "tenant", "table", "row", "column", "winner", "loser", "resolved"],
        (
            (c.id, c.tenant, c.table, c.row_id[:8], c.column, _short(c.winner_value), _short(c.loser_value),
             "yes" if c.resolved_at else "")
            for c in found
        ),
    )  # fmt: skip


@conflicts.command("show")
@click.argument("conflict_id")
@_database_options
@json_option
def conflicts_show(conflict_id: str, database_url: str | None, data_dir: str, as_json: bool) -> None:
    """One conflict record in full."""
    with _database(database_url, data_dir) as url:
        found = _server().admin.show_conflict(url, conflict_id)
    if as_json:
        emit_json(found.to_dict())
        return
    table(None, ["field", "value"], found.to_dict().items())


@conflicts.command("resolve")
@click.argument("conflict_id")
@click.option("--keep", type=click.Choice(["winner", "loser"]), default="winner", show_default=True,
              help="Keep the winning value, or write the losing one back.")  # fmt: skip
@click.option("--value", help="Write this value instead (JSON: a string needs quotes).")
@_database_options
@json_option
def conflicts_resolve(
    conflict_id: str, keep: str, value: str | None, database_url: str | None, data_dir: str, as_json: bool
) -> None:
    """Resolve a conflict; a value written this way syncs to every replica."""
    import msgspec

    how: dict[str, Any] = {"keep": keep, "by": "cli"}
    if value is not None:
        try:
            how["value"] = msgspec.json.decode(value)
        except msgspec.DecodeError:
            raise click.BadParameter("not JSON (a text value needs quotes: '\"done\"')", param_hint="--value") from None
    with _database(database_url, data_dir) as url:
        found = _server().admin.resolve_conflict(url, conflict_id, **how)
    if as_json:
        emit_json(found.to_dict())
    else:
        click.echo(f"resolved {found.id} ({found.table}.{found.column} of {found.row_id})")


def _short(value: Any, width: int = 24) -> str:
    text = value.hex() if isinstance(value, bytes) else repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"
