"""Fleet-wide execution and event figures for ``/metrics``, across every tenant.

The same definitions as :mod:`syncstore.metrics` (counts, error rate,
p50/p95/p99 duration by linear interpolation, tokens, cost; see its docstring),
computed by PostgreSQL in one aggregate query per table over a trailing window
(``window_s``, default one hour): executions by ``agent_type`` (window on
``started_at``, or ``created_at`` for a run not started), events by
``component`` and ``operation`` (window on ``timestamp``). Deleted rows are
left out.

Cost of a scrape: the figures are computed at most once per ``ttl_s`` (default
15 s) per server process, when a scrape finds them older; scrapes in between,
and scrapes that arrive while a refresh runs, are served from the last figures.
The window is read through the ``(tenant, started_at)`` and ``(tenant,
timestamp)`` indexes, one tenant at a time (the tenants are found by skipping
along the primary key), so a refresh reads the rows of the window, not the
tables. A refresh that fails or outlasts ``statement_timeout_s`` keeps the
previous figures and is counted in ``syncstore_fleet_refresh_failures_total``.

Labels are ``agent_type``, ``component`` and ``operation``, not the tenant:
those values come from clients, and with a tenant label every tenant would
multiply the series (Prometheus keeps each one). For the same reason at most
``max_groups`` groups per table are shown, the busiest; the rest are summed
into one group labelled ``_other``. A missing value is the empty label.
Per-tenant figures are what ``syncstore executions stats`` shows on a replica.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from decimal import Decimal
from typing import Any, Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily
from psycopg_pool import AsyncConnectionPool

from syncstore import schema
from syncstore.metrics import GroupStats

from syncstore_server.tables import SCHEMA

log = logging.getLogger("syncstore.server.fleet_metrics")

DEFAULT_WINDOW_S = 3600.0
DEFAULT_TTL_S = 15.0
DEFAULT_MAX_GROUPS = 100
MAX_LABEL = 100  # characters of a label value
OTHER = "_other"
QUANTILES = (0.5, 0.95, 0.99)
_EXECUTIONS = schema.TABLES["agent_executions"].name
_EVENTS = schema.TABLES["observability_events"].name


def _positive_integer(json: str) -> str:
    """SQL for a JSON value counted as tokens: a positive integer, else 0
    (as :func:`syncstore.metrics._count`)."""
    return (
        f"(case when jsonb_typeof({json}) = 'number' and ({json} #>> '{{}}') ~ '^[0-9]+$' "
        f"then ({json} #>> '{{}}')::numeric else 0 end)"
    )


def _finite_number(json: str) -> str:
    """SQL for a JSON number as float8, else NULL (as :func:`syncstore.metrics._number`)."""
    return f"(case when jsonb_typeof({json}) = 'number' then ({json} #>> '{{}}')::float8 end)"


_FINITE = "{c} > '-Infinity'::float8 and {c} < 'Infinity'::float8"  # also leaves NaN out


def _tenants(table: str) -> str:
    """Every tenant with rows in ``table``: a loose index scan of the primary
    key, one probe per tenant, however many rows each has."""
    return (
        f"with recursive tenants(tenant) as ("
        f"(select tenant from {SCHEMA}.{table} order by tenant limit 1) union all "
        f"select (select r.tenant from {SCHEMA}.{table} r where r.tenant > t.tenant order by r.tenant limit 1) "
        f"from tenants t where t.tenant is not null)"
    )


def _label(column: str) -> str:
    return f"left(coalesce({column}, ''), {MAX_LABEL})"


def _durations() -> str:
    return (
        "percentile_cont(array[0.5, 0.95, 0.99]::float8[]) within group (order by duration_ms) "
        f"filter (where {_FINITE.format(c='duration_ms')})"
    )


def _at(column: str, *keys: str) -> str:
    """SQL for ``column->'key'->...`` (keys are this module's constants)."""
    return column + "".join(f"->'{key}'" for key in keys)


def _usage(column: str) -> tuple[str, str, str]:
    """Input, output and total tokens of an execution's ``token_usage``."""
    tokens_in = _positive_integer(_at(column, "input_tokens"))
    tokens_out = _positive_integer(_at(column, "output_tokens"))
    given = _positive_integer(_at(column, "total_tokens"))
    return tokens_in, tokens_out, f"(case when {given} > 0 then {given} else {tokens_in} + {tokens_out} end)"


def executions_query() -> str:
    tokens_in, tokens_out, total = _usage("token_usage")
    return f"""
{_tenants(_EXECUTIONS)},
rows as (
    select {_label('agent_type')} as agent_type, status, duration_ms, token_usage, cost
    from {SCHEMA}.{_EXECUTIONS}
    where tenant = any(array(select tenant from tenants where tenant is not null))
      and (started_at >= %(since)s or (started_at is null and created_at >= %(since)s))
      and not _deleted
),
top as (select agent_type from rows group by agent_type order by count(*) desc, agent_type limit %(groups)s)
select case when agent_type in (select agent_type from top) then agent_type else '{OTHER}' end,
    count(*),
    count(*) filter (where status = 'completed'),
    count(*) filter (where status = 'failed'),
    count(*) filter (where status = 'cancelled'),
    count(*) filter (where status = 'running'),
    count(*) filter (where status = 'pending'),
    {_durations()},
    avg(duration_ms) filter (where {_FINITE.format(c='duration_ms')}),
    max(duration_ms) filter (where {_FINITE.format(c='duration_ms')}),
    coalesce(sum({tokens_in}), 0), coalesce(sum({tokens_out}), 0), coalesce(sum({total}), 0),
    coalesce(sum(cost) filter (where {_FINITE.format(c='cost')}), 0)
from rows group by 1
"""


def events_query() -> str:
    # An event's tokens and cost: the span's GenAI attributes first, else the
    # data's own fields (as syncstore.metrics.event_tokens).
    tokens_in, tokens_out = (
        f"coalesce(nullif({_positive_integer(_at('data', 'attributes', f'gen_ai.usage.{name}_tokens'))}, 0), "
        f"{_positive_integer(_at('data', 'token_usage', f'{name}_tokens'))})"
        for name in ("input", "output")
    )
    cost = (
        f"coalesce(nullif({_finite_number(_at('data', 'attributes', 'syncstore.cost'))}, 0), "
        f"nullif({_finite_number(_at('data', 'cost'))}, 0), 0)"
    )
    return f"""
{_tenants(_EVENTS)},
rows as (
    select {_label('component')} as component, {_label('operation')} as operation,
        severity, duration_ms, {tokens_in} as tokens_in, {tokens_out} as tokens_out, {cost} as cost
    from {SCHEMA}.{_EVENTS}
    where tenant = any(array(select tenant from tenants where tenant is not null))
      and "timestamp" >= %(since)s
      and not _deleted
),
top as (
    select component, operation from rows group by component, operation
    order by count(*) desc, component, operation limit %(groups)s
)
select case when (component, operation) in (select component, operation from top) then component else '{OTHER}' end,
    case when (component, operation) in (select component, operation from top) then operation else '{OTHER}' end,
    count(*),
    count(*) filter (where severity in ('error', 'critical')),
    {_durations()},
    avg(duration_ms) filter (where {_FINITE.format(c='duration_ms')}),
    max(duration_ms) filter (where {_FINITE.format(c='duration_ms')}),
    coalesce(sum(tokens_in), 0), coalesce(sum(tokens_out), 0),
    coalesce(sum(cost), 0)
from rows group by 1, 2
"""


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float, Decimal)) else None


def _quantiles(stats: GroupStats, values: Sequence[float] | None) -> None:
    if values:
        stats.p50_ms, stats.p95_ms, stats.p99_ms = (float(v) for v in values)


def _execution_stats(record: Sequence[Any]) -> GroupStats:
    (agent_type, count, completed, failed, cancelled, running, pending, quantiles, mean, top,
     tokens_in, tokens_out, total, cost) = record  # fmt: skip
    stats = GroupStats(
        group={"agent_type": agent_type},
        count=count, completed=completed, failed=failed, cancelled=cancelled, running=running, pending=pending,
        errors=failed, mean_ms=_float(mean), max_ms=_float(top),
        input_tokens=_int(tokens_in), output_tokens=_int(tokens_out), total_tokens=_int(total), cost=float(cost),
    )  # fmt: skip
    ended = completed + failed + cancelled
    stats.error_rate = failed / ended if ended else None
    _quantiles(stats, quantiles)
    return stats


def _event_stats(record: Sequence[Any]) -> GroupStats:
    component, operation, count, errors, quantiles, mean, top, tokens_in, tokens_out, cost = record
    stats = GroupStats(
        group={"component": component, "operation": operation},
        count=count, errors=errors, error_rate=errors / count if count else None,
        mean_ms=_float(mean), max_ms=_float(top),
        input_tokens=_int(tokens_in), output_tokens=_int(tokens_out),
        total_tokens=_int(tokens_in) + _int(tokens_out), cost=float(cost),
    )  # fmt: skip
    _quantiles(stats, quantiles)
    return stats


_EXECUTIONS_SQL = executions_query()
_EVENTS_SQL = events_query()


class Snapshot:
    def __init__(self, executions: list[GroupStats], events: list[GroupStats], *, computed: float):
        self.executions = executions
        self.events = events
        self.computed = computed  # time.time() when read


async def compute(
    pool: AsyncConnectionPool,
    *,
    since: dt.datetime,
    max_groups: int = DEFAULT_MAX_GROUPS,
    statement_timeout_s: float = 10.0,
) -> Snapshot:
    """The figures of every tenant's executions and events since ``since``."""
    params = {"since": since, "groups": max_groups}
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "select set_config('statement_timeout', %s, true)", (str(int(statement_timeout_s * 1000)),)
        )
        cur = await conn.execute(_EXECUTIONS_SQL, params)
        executions = [_execution_stats(r) for r in await cur.fetchall()]
        cur = await conn.execute(_EVENTS_SQL, params)
        events = [_event_stats(r) for r in await cur.fetchall()]
    order = lambda s: (-s.count, [str(v) for v in s.group.values()])  # noqa: E731 (as syncstore.metrics sorts)
    return Snapshot(sorted(executions, key=order), sorted(events, key=order), computed=time.time())


class FleetMetrics:
    """A Prometheus collector of the fleet's figures; ``await refresh()`` before
    rendering brings them up to date when they are older than ``ttl_s``."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        ttl_s: float = DEFAULT_TTL_S,
        max_groups: int = DEFAULT_MAX_GROUPS,
        statement_timeout_s: float = 10.0,
        on_failure: Any = None,
    ):
        self._pool = pool
        self.window_s = window_s
        self.ttl_s = ttl_s
        self.max_groups = max_groups
        self.statement_timeout_s = statement_timeout_s
        self._on_failure = on_failure  # called with no arguments when a refresh fails
        self._snapshot: Snapshot | None = None
        self._refreshed = float("-inf")  # time.monotonic() of the last attempt
        self._lock = asyncio.Lock()

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    async def refresh(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._refreshed < self.ttl_s:
            return
        if self._lock.locked() and self._snapshot is not None:
            return  # a refresh is running: serve the last figures
        async with self._lock:
            if not force and time.monotonic() - self._refreshed < self.ttl_s:
                return
            self._refreshed = time.monotonic()
            since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=self.window_s)
            try:
                self._snapshot = await compute(
                    self._pool, since=since, max_groups=self.max_groups, statement_timeout_s=self.statement_timeout_s
                )
            except Exception as exc:  # the other metrics are still worth serving
                log.warning("fleet metrics not refreshed: %s", type(exc).__name__)
                if self._on_failure is not None:
                    self._on_failure()

    # --- the prometheus_client collector protocol ---------------------------------

    def describe(self) -> list[Any]:
        return []  # the families depend on the data; nothing to check at registration

    def collect(self) -> Iterator[Any]:
        snapshot = self._snapshot
        if snapshot is None:
            return
        window = f"over the last {self.window_s:g} s, all tenants"
        yield GaugeMetricFamily(
            "syncstore_fleet_window_seconds", "The trailing window of the fleet figures", value=self.window_s
        )
        yield GaugeMetricFamily(
            "syncstore_fleet_computed_timestamp_seconds",
            "When the fleet figures were read (Unix time)",
            value=snapshot.computed,
        )
        yield from _families("execution", ["agent_type"], snapshot.executions, window)
        yield from _families("event", ["component", "operation"], snapshot.events, window)


def _families(kind: str, labels: list[str], groups: list[GroupStats], window: str) -> Iterator[Any]:
    prefix = f"syncstore_fleet_{kind}"
    by_status = ["status"] if kind == "execution" else []
    counts = GaugeMetricFamily(f"{prefix}s", f"{kind.capitalize()}s {window}", labels=labels + by_status)
    errors = GaugeMetricFamily(f"{prefix}_errors", f"Failed {kind}s {window}", labels=labels)
    ratio = GaugeMetricFamily(
        f"{prefix}_error_ratio", f"Error rate of {kind}s {window} (see syncstore.metrics)", labels=labels
    )
    durations = GaugeMetricFamily(
        f"{prefix}_duration_seconds", f"Duration quantiles of {kind}s {window}", labels=labels + ["quantile"]
    )
    tokens = GaugeMetricFamily(f"{prefix}_tokens", f"Tokens used by {kind}s {window}", labels=labels + ["kind"])
    cost = GaugeMetricFamily(f"{prefix}_cost", f"Cost recorded on {kind}s {window}", labels=labels)
    for stats in groups:
        values = [str(stats.group[name]) for name in labels]
        if kind == "execution":
            for status in schema.EXECUTION_STATUSES:
                counts.add_metric(values + [status], getattr(stats, status))
        else:
            counts.add_metric(values, stats.count)
        errors.add_metric(values, stats.errors)
        if stats.error_rate is not None:
            ratio.add_metric(values, stats.error_rate)
        for q, ms in zip(QUANTILES, (stats.p50_ms, stats.p95_ms, stats.p99_ms)):
            if ms is not None:
                durations.add_metric(values + [f"{q:g}"], ms / 1000.0)
        for name in ("input", "output", "total"):
            tokens.add_metric(values + [name], getattr(stats, f"{name}_tokens"))
        cost.add_metric(values, stats.cost)
    yield from (counts, errors, ratio, durations, tokens, cost)
