"""Stored spans out as OTLP JSON, for any OpenTelemetry collector, later.

The output is one ``ExportTraceServiceRequest`` in the OTLP/JSON encoding
(the body of ``POST /v1/traces`` with ``Content-Type: application/json``):
trace and span ids as hex, 64-bit integers as decimal strings, enums as
numbers, attributes as ``{"key", "value": {"stringValue": ...}}`` lists.
Spans are grouped by resource and instrumentation scope, as the SDK's OTLP
exporters group them. Plain functions of stored rows; no OpenTelemetry
package is needed to export.

    syncstore events export --otlp trace.json --execution ID
    curl -X POST -H 'Content-Type: application/json' --data @trace.json http://collector:4318/v1/traces
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any, Iterable, Mapping

import msgspec

from syncstore import schema
from syncstore.metrics import as_json

SPAN_KINDS = {"INTERNAL": 1, "SERVER": 2, "CLIENT": 3, "PRODUCER": 4, "CONSUMER": 5}
STATUS_CODES = {"UNSET": 0, "OK": 1, "ERROR": 2}


def any_value(value: Any) -> dict[str, Any]:
    """One attribute value as an OTLP ``AnyValue``."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [any_value(v) for v in value]}}
    if isinstance(value, Mapping):
        return {"kvlistValue": {"values": key_values(value)}}
    if value is None:
        return {}
    return {"stringValue": str(value)}


def key_values(attributes: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return [{"key": key, "value": any_value(value)} for key, value in (attributes or {}).items()]


def _dropped(out: dict[str, Any], name: str, count: Any) -> None:
    if count:
        out[name] = int(count)


def otlp_span(row: Mapping[str, Any]) -> dict[str, Any]:
    """One stored span event (a row or a decoded record's fields) as an OTLP span."""
    data = as_json(row["data"]) or {}
    span: dict[str, Any] = {"traceId": row["trace_id"], "spanId": row["span_id"]}
    if data.get("trace_state"):
        span["traceState"] = data["trace_state"]
    if row.get("parent_span_id"):
        span["parentSpanId"] = row["parent_span_id"]
    span["flags"] = int(data.get("flags") or 0)
    span["name"] = data.get("name", "")
    span["kind"] = SPAN_KINDS.get(data.get("kind", "INTERNAL"), 1)
    span["startTimeUnixNano"] = str(data.get("start_time_unix_nano", 0))
    span["endTimeUnixNano"] = str(data.get("end_time_unix_nano", 0))
    span["attributes"] = key_values(data.get("attributes"))
    dropped = data.get("dropped") or {}
    _dropped(span, "droppedAttributesCount", dropped.get("attributes"))
    events = []
    for event in data.get("events") or []:
        out = {"timeUnixNano": str(event.get("time_unix_nano", 0)), "name": event.get("name", ""), "attributes": key_values(event.get("attributes"))}
        _dropped(out, "droppedAttributesCount", event.get("dropped_attributes_count"))
        events.append(out)
    span["events"] = events
    _dropped(span, "droppedEventsCount", dropped.get("events"))
    links = []
    for link in data.get("links") or []:
        out = {"traceId": link["trace_id"], "spanId": link["span_id"]}
        if link.get("trace_state"):
            out["traceState"] = link["trace_state"]
        out["attributes"] = key_values(link.get("attributes"))
        _dropped(out, "droppedAttributesCount", link.get("dropped_attributes_count"))
        out["flags"] = int(link.get("flags") or 0)
        links.append(out)
    span["links"] = links
    _dropped(span, "droppedLinksCount", dropped.get("links"))
    status = data.get("status") or {}
    span["status"] = {"code": STATUS_CODES.get(status.get("code", "UNSET"), 0)}
    if status.get("message"):
        span["status"]["message"] = status["message"]
    return span


def export_request(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Stored span events (rows with ``event_type == "span"``; others are
    skipped) as one OTLP ``ExportTraceServiceRequest``."""
    resources: dict[bytes, tuple[Any, dict[bytes, tuple[Any, list[dict[str, Any]]]]]] = {}
    for row in rows:
        if row.get("event_type") != "span" or not row.get("trace_id") or not row.get("span_id"):
            continue
        data = as_json(row["data"]) or {}
        resource = data.get("resource") or {"attributes": {}, "schema_url": ""}
        scope = data.get("scope") or {"name": "", "version": None, "schema_url": "", "attributes": {}}
        resource_key = msgspec.json.encode(resource, order="sorted")
        scope_key = msgspec.json.encode(scope, order="sorted")
        scopes = resources.setdefault(resource_key, (resource, {}))[1]
        scopes.setdefault(scope_key, (scope, []))[1].append(otlp_span(row))
    resource_spans = []
    for resource, scopes in resources.values():
        scope_spans = []
        for scope, spans in scopes.values():
            scope_out: dict[str, Any] = {"name": scope.get("name") or ""}
            if scope.get("version"):
                scope_out["version"] = scope["version"]
            if scope.get("attributes"):
                scope_out["attributes"] = key_values(scope["attributes"])
            entry: dict[str, Any] = {"scope": scope_out, "spans": spans}
            if scope.get("schema_url"):
                entry["schemaUrl"] = scope["schema_url"]
            scope_spans.append(entry)
        out: dict[str, Any] = {"resource": {"attributes": key_values(resource.get("attributes"))}, "scopeSpans": scope_spans}
        if resource.get("schema_url"):
            out["schemaUrl"] = resource["schema_url"]
        resource_spans.append(out)
    return {"resourceSpans": resource_spans}


def stored_spans(
    store: Any,
    *,
    execution_id: str | None = None,
    trace_id: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """The stored span events of ``store`` matching the filters, in time order
    (``since <= start < until``)."""
    since = schema.format_timestamp(since) if since is not None else None
    until = schema.format_timestamp(until) if until is not None else None
    clauses, params = ["event_type = 'span'"], []
    for column, value, op in (("execution_id", execution_id, "="), ("trace_id", trace_id, "="), ("timestamp", since, ">="), ("timestamp", until, "<")):
        if value is not None:
            clauses.append(f"{column} {op} ?")
            params.append(value)
    if store.events.pending:
        store.events.flush()
    return store.query(f"select * from observability_events where {' and '.join(clauses)} order by timestamp, id", params)


def export_json(store: Any, **filters: Any) -> str:
    """The matching stored spans as OTLP JSON text (filters as for :func:`stored_spans`)."""
    return msgspec.json.encode(export_request(stored_spans(store, **filters))).decode()


def write_json(store: Any, path: str | os.PathLike[str], **filters: Any) -> int:
    """Write the matching stored spans to ``path`` as OTLP JSON; returns how many."""
    rows = stored_spans(store, **filters)
    with open(path, "wb") as out:
        out.write(msgspec.json.encode(export_request(rows)))
    return sum(1 for r in rows if r.get("trace_id") and r.get("span_id"))

