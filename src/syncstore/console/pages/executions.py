"""Agent executions and their events: the live list, one run's events on a time
axis, and figures per agent type with charts."""

from __future__ import annotations

from typing import Any, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncstore import metrics, schema
from syncstore.console import charts
from syncstore.console.pages.common import choice, paged, params_of, store_of
from syncstore.console.templating import render
from syncstore.errors import ValidationError
from syncstore.store import Store

MAX_EVENTS_SHOWN = 2_000  # a run's events listed and drawn; the rest are counted
DEFAULT_WINDOW = "7d"
STATUS_SERIES = ("completed", "failed", "cancelled", "running", "pending")


def agent_types(store: Store) -> list[str]:
    return [row["agent_type"] for row in store.query("select distinct agent_type from agent_executions order by 1")]


def execution_list(store: Store, params: Mapping[str, str]) -> dict[str, Any]:
    """The library reads behind the executions list: a page of runs, newest first."""
    filters = {
        "agent_type": params.get("agent_type"),
        "status": choice(params, "status", schema.EXECUTION_STATUSES),
    }
    rows, page = paged(
        lambda **window: store.executions.list(order_by="created_at", descending=True, **window, **filters), params
    )
    return {"executions": rows, "page": page, "filters": params, "agent_types": agent_types(store)}


def execution_detail(store: Store, execution_id: str) -> dict[str, Any]:
    """The library reads behind a run's page: the run and its events in time order."""
    execution = store.executions.get(execution_id)
    events = store.executions.events(execution_id)
    shown = events[:MAX_EVENTS_SHOWN]
    return {
        "execution": execution,
        "events": shown,
        "hidden_events": len(events) - len(shown),
        "axis": charts.event_axis(shown),
        "children": store.query(
            "select id, agent_type, status from agent_executions where json_extract(metadata, '$.parent_execution_id') = ? "
            "order by created_at limit 100",
            (execution_id,),
        ),
    }


# The columns syncstore.metrics.execution_stats reads: a row of these is a fifth
# of a whole row to build, for the same figures.
STATS_COLUMNS = ("agent_type", "status", "duration_ms", "token_usage", "cost", "started_at", "created_at")


def execution_stats(store: Store, params: Mapping[str, str]) -> dict[str, Any]:
    """The library reads behind the stats page: figures per agent type in the window
    (``syncstore.metrics.execution_stats`` over the runs that started in it, as
    ``store.executions.stats`` computes them)."""
    window = params.get("since", DEFAULT_WINDOW)
    sql = f"select {', '.join(STATS_COLUMNS)} from agent_executions"
    args: list[Any] = []
    if window != "all":
        try:
            since = metrics.parse_since(window)
        except ValueError as exc:
            raise ValidationError(str(exc), field="since") from None
        sql += " where coalesce(started_at, created_at) >= ?"
        args.append(schema.format_timestamp(since))
    rows = store.query(sql, args)  # read once, summed two ways
    groups = metrics.execution_stats(rows, by=("agent_type",))
    overall = metrics.execution_stats(rows, by=())
    return {"groups": groups, "overall": overall[0] if overall else None, "window": window}


def stats_charts(groups: list[metrics.GroupStats]) -> list[tuple[str, charts.Chart]]:
    def name(g: metrics.GroupStats) -> str:
        return str(g.group.get("agent_type"))

    return [
        ("chart-runs", charts.stacked("Runs by outcome", [(name(g), [(s, getattr(g, s)) for s in STATUS_SERIES]) for g in groups], series=STATUS_SERIES)),
        ("chart-latency", charts.grouped("Duration percentiles", [(name(g), [("p50", g.p50_ms), ("p95", g.p95_ms), ("p99", g.p99_ms)]) for g in groups], unit=" ms")),
        ("chart-errors", charts.bars("Error rate", [(name(g), round((g.error_rate or 0.0) * 100, 1)) for g in groups], unit="%", css="status-failed")),
        ("chart-tokens", charts.bars("Tokens", [(name(g), g.total_tokens) for g in groups], css="series-1")),
        ("chart-cost", charts.bars("Cost", [(name(g), round(g.cost, 4)) for g in groups], css="series-2")),
    ]


def list_page(request: Request) -> Response:
    data = execution_list(store_of(request), params_of(request))
    return render(request, "executions/list.html", {**data, "active": "executions", "statuses": schema.EXECUTION_STATUSES})


def detail_page(request: Request) -> Response:
    data = execution_detail(store_of(request), request.path_params["execution_id"])
    return render(request, "executions/detail.html", {**data, "active": "executions"})


def stats_page(request: Request) -> Response:
    data = execution_stats(store_of(request), params_of(request))
    context = {**data, "charts": stats_charts(data["groups"]), "active": "executions", "windows": ("1h", "24h", "7d", "30d", "all")}
    return render(request, "executions/stats.html", context)


routes = [
    Route("/executions", list_page, methods=["GET"]),
    Route("/executions/stats", stats_page, methods=["GET"]),
    Route("/executions/{execution_id}", detail_page, methods=["GET"]),
]
