"""``syncstore events tail / stats / export``"""

from __future__ import annotations

import click

import syncstore
from syncstore import metrics, otlp, schema
from syncstore.cli.executions import STATS_COLUMNS, fmt_ms, parse_window, since_option, stats_rows
from syncstore.cli.common import json_option, with_store
from syncstore.cli.output import emit_json, table
from syncstore.events import Event


@click.group()
def events() -> None:
    """Watch and summarise observability events."""


def line(event: Event) -> str:
    """One event as one line of text."""
    name = event.data.get("name") if event.event_type == "span" else event.event_type
    parts = [
        event.timestamp.strftime("%H:%M:%S.%f")[:-3],
        f"{event.severity:8}",
        f"{event.component or '-'}/{event.operation or '-'}",
        str(name),
    ]
    if event.duration_ms is not None:
        parts.append(fmt_ms(event.duration_ms))
    if event.error_code or event.error_message:
        parts.append(f"[{event.error_code or 'error'}] {(event.error_message or '').splitlines()[0] if event.error_message else ''}".rstrip())
    if event.execution_id:
        parts.append(f"exec={event.execution_id}")
    return "  ".join(parts)


@events.command("tail")
@click.option("-f", "--follow", is_flag=True, help="Keep printing events as they arrive (local or synced).")
@click.option("--severity", type=click.Choice(schema.SEVERITIES), help="Minimum severity to show.")
@click.option("--component", help="Only this component.")
@click.option("--execution", "execution_id", help="Only this execution's events.")
@click.option("-n", "--lines", "last", type=click.IntRange(min=0), default=20, show_default=True, help="How many recent events to print first.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after printing this many events.")
@click.option("--interval", type=click.FloatRange(min=0.01), default=0.25, show_default=True, help="Seconds between polls with --follow.")
@json_option
@with_store
def tail(
    store: syncstore.Store,
    follow: bool,
    severity: str | None,
    component: str | None,
    execution_id: str | None,
    last: int,
    count: int | None,
    interval: float,
    as_json: bool,
) -> None:
    """Print recent events; with --follow, keep printing new ones (Ctrl-C stops).

    New events are found by polling the replica in arrival order, so rows that
    sync brings in from other replicas show up as well as local ones.
    """
    filters = dict(severity=severity, component=component, execution_id=execution_id)
    if follow:
        stream = store.events.follow(last=last, poll_interval=interval, **filters)
    else:
        stream = (event for _, event in store.events.tail(last=last, **filters))
    printed = 0
    try:
        for event in stream:
            if as_json:
                emit_json(event)
            else:
                click.echo(line(event))
            printed += 1
            if count is not None and printed >= count:
                break
    except KeyboardInterrupt:
        pass


@events.command("stats")
@since_option("24h")
@click.option("--until", default=None, help="Window end (same forms as --since); default now.")
@click.option("--by", type=click.Choice(metrics.EVENT_GROUPS), multiple=True, help="Group by this field (repeatable); default component and operation.")
@json_option
@with_store
def stats(store: syncstore.Store, since: str | None, until: str | None, by: tuple[str, ...], as_json: bool) -> None:
    """Counts, error rate, p50/p95/p99 duration, tokens and cost per component and operation."""
    start, end = parse_window(since, until)
    rows = store.events.rows_between(
        since=schema.format_timestamp(start) if start else None,
        until=schema.format_timestamp(end) if end else None,
    )
    groups = metrics.event_stats(rows, by=by or ("component", "operation"))
    if as_json:
        emit_json({"since": start, "until": end, "groups": groups})
        return
    table(f"events since {start:%Y-%m-%d %H:%M:%S}" if start else "all events", STATS_COLUMNS, stats_rows(groups))


@events.command("export")
@click.option("--otlp", "path", required=True, type=click.Path(dir_okay=False, writable=True), help="Write OTLP JSON here ('-' for stdout).")
@click.option("--execution", "execution_id", help="Only this execution's spans.")
@click.option("--trace", "trace_id", help="Only this trace's spans.")
@since_option(None)
@with_store
def export(store: syncstore.Store, path: str, execution_id: str | None, trace_id: str | None, since: str | None) -> None:
    """Write stored spans as OTLP JSON, ready to POST to a collector's /v1/traces."""
    start, _ = parse_window(since, None)
    filters = dict(execution_id=execution_id, trace_id=trace_id, since=start)
    if path == "-":
        click.echo(otlp.export_json(store, **filters))
        return
    written = otlp.write_json(store, path, **filters)
    click.echo(f"wrote {written} spans to {path}", err=True)
