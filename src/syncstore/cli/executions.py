"""``syncstore executions list / show / stats``"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

import syncstore
from syncstore import metrics, records, schema
from syncstore.cli.common import json_option, with_store
from syncstore.cli.output import emit_json, table


def since_option(default: str | None) -> Any:
    return click.option(
        "--since",
        default=default,
        show_default=True,
        help="Window start: a duration back from now (15m, 2h, 7d) or an ISO timestamp.",
    )


def parse_window(since: str | None, until: str | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    try:
        return (
            metrics.parse_since(since) if since else None,
            metrics.parse_since(until) if until else None,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def fmt_ms(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value / 1000:.2f}s" if value >= 10_000 else f"{value:.1f}ms"


def fmt_time(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def stats_rows(found: list[metrics.GroupStats]) -> list[tuple[Any, ...]]:
    rows = []
    for s in found:
        rate = "" if s.error_rate is None else f"{s.error_rate:.1%}"
        label = " / ".join("-" if v is None else str(v) for v in s.group.values()) or "all"
        rows.append(
            (label, s.count, s.errors, rate, fmt_ms(s.p50_ms), fmt_ms(s.p95_ms), fmt_ms(s.p99_ms),
             s.input_tokens, s.output_tokens, f"{s.cost:.4f}")
        )  # fmt: skip
    return rows


STATS_COLUMNS = ["group", "count", "errors", "error rate", "p50", "p95", "p99", "tokens in", "tokens out", "cost"]


@click.group()
def executions() -> None:
    """Browse agent executions: list them, show one with its events, figures."""


@executions.command("list")
@click.option("--status", type=click.Choice(schema.EXECUTION_STATUSES))
@click.option("--agent-type")
@click.option("--task", "task_id", help="Only this task's executions.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@json_option
@with_store
def list_(store: syncstore.Store, status: str | None, agent_type: str | None, task_id: str | None, limit: int, offset: int, as_json: bool) -> None:
    """List executions, newest first."""
    found = store.executions.list(
        limit=limit, offset=offset, order_by="created_at", descending=True, status=status, agent_type=agent_type, task_id=task_id
    )
    if as_json:
        emit_json(found)
        return
    table(
        None,
        ["id", "status", "agent", "started", "duration", "tokens", "cost", "model"],
        (
            (
                e.id, e.status, e.agent_type, fmt_time(e.started_at), fmt_ms(e.duration_ms),
                (e.token_usage or {}).get("total_tokens", ""), "" if e.cost is None else f"{e.cost:.4f}", e.model or "",
            )
            for e in found
        ),
    )  # fmt: skip


def _depths(events: list[Any]) -> dict[str, int]:
    """How deep each span sits under the execution's top span (for indenting)."""
    parents = {e.span_id: e.parent_span_id for e in events if e.span_id}
    depths: dict[str, int] = {}
    for span_id in parents:
        depth, seen, node = 0, {span_id}, parents[span_id]
        while node in parents and node not in seen:
            seen.add(node)
            depth += 1
            node = parents[node]
        depths[span_id] = depth
    return depths


@executions.command("show")
@click.argument("execution_id")
@json_option
@with_store
def show(store: syncstore.Store, execution_id: str, as_json: bool) -> None:
    """Show one execution and its events in time order."""
    execution = store.executions.get(execution_id)
    events = store.executions.events(execution_id)
    if as_json:
        emit_json({"execution": execution, "events": events})
        return
    for field, value in records.to_dict(execution).items():
        if value not in (None, {}, ""):
            click.echo(f"{field:15} {value}")
    if not events:
        click.echo("\n(no events)")
        return
    click.echo("")
    start = execution.started_at or events[0].timestamp
    depths = _depths(events)
    rows = []
    for e in events:
        offset = (e.timestamp - start).total_seconds() * 1000 if start else 0.0
        name = e.data.get("name") if e.event_type == "span" else e.event_type
        indent = "  " * depths.get(e.span_id or "", 0)
        detail = e.error_message or ""
        if e.error_code:
            detail = f"{e.error_code}: {detail}" if detail else e.error_code
        rows.append((f"+{offset:.1f}ms", e.severity, f"{indent}{name}", e.component or "", e.operation or "", fmt_ms(e.duration_ms), detail[:80]))
    table(f"{len(events)} events", ["at", "severity", "event", "component", "operation", "duration", "error"], rows)


@executions.command("stats")
@since_option("24h")
@click.option("--until", default=None, help="Window end (same forms as --since); default now.")
@click.option(
    "--by",
    "by",
    type=click.Choice(metrics.EXECUTION_GROUPS),
    multiple=True,
    help="Group by this field (repeatable); default agent_type.",
)
@json_option
@with_store
def stats(store: syncstore.Store, since: str | None, until: str | None, by: tuple[str, ...], as_json: bool) -> None:
    """Counts, error rate, p50/p95/p99 duration, tokens and cost per agent type."""
    start, end = parse_window(since, until)
    groups = store.executions.stats(since=start, until=end, by=by or ("agent_type",))
    overall = store.executions.stats(since=start, until=end, by=())
    if as_json:
        emit_json({"since": start, "until": end, "groups": groups, "overall": overall[0] if overall else None})
        return
    title = f"executions since {fmt_time(start)}" if start else "all executions"
    table(title, STATS_COLUMNS, stats_rows(groups + overall))
