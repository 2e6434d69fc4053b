"""The OpenTelemetry bridge with the real SDK: spans in, executions out, OTLP JSON back."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState  # noqa: E402

from syncstore import otlp  # noqa: E402
from syncstore.otel import SyncstoreSpanProcessor  # noqa: E402

AGENT = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "planner", "gen_ai.provider.name": "openai"}


@pytest.fixture
def otel(store):
    """A tracer provider recording into the store, plus an in-memory copy of every span."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "agent-tests", "deployment.environment": "ci"}))
    provider.add_span_processor(SyncstoreSpanProcessor(store))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.agent", "1.2.3")
    yield tracer, memory
    provider.shutdown()


def chat(tracer, input_tokens: int, output_tokens: int, model: str = "gpt-4o") -> None:
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "gen_ai.response.model": model + "-2024",
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
    }
    with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes):
        pass


def test_an_agent_run_becomes_an_execution_with_its_spans_as_events(store, otel):
    tracer, memory = otel
    with tracer.start_as_current_span("invoke_agent planner", attributes={**AGENT, "syncstore.task_id": "task-7"}) as agent:
        chat(tracer, 100, 20)
        with tracer.start_as_current_span("execute_tool search", attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"}):
            chat(tracer, 40, 5, model="gpt-4o-mini")
    (execution,) = store.executions.list()
    ctx = agent.get_span_context()
    assert execution.agent_type == "planner" and execution.task_id == "task-7"
    assert execution.status == "completed"
    assert (execution.trace_id, execution.span_id) == (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
    assert execution.token_usage == {"input_tokens": 140, "output_tokens": 25, "total_tokens": 165}
    assert execution.provider == "openai" and execution.model == "gpt-4o-2024"
    (agent_span,) = [s for s in memory.get_finished_spans() if s.name.startswith("invoke_agent")]
    assert execution.duration_ms == pytest.approx((agent_span.end_time - agent_span.start_time) / 1e6)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
    assert execution.started_at == epoch + dt.timedelta(microseconds=agent_span.start_time // 1000)  # to the microsecond
    assert execution.completed_at == epoch + dt.timedelta(microseconds=agent_span.end_time // 1000)
    events = store.executions.events(execution.id)
    assert events[0].timestamp == execution.started_at
    assert [e.data["name"] for e in events] == ["invoke_agent planner", "chat gpt-4o", "execute_tool search", "chat gpt-4o-mini"]
    assert all(e.event_type == "span" and e.correlation_id == execution.correlation_id for e in events)
    by_name = {e.data["name"]: e for e in events}
    assert by_name["execute_tool search"].component == "search"
    assert by_name["execute_tool search"].operation == "execute_tool"
    assert by_name["chat gpt-4o"].operation == "chat" and by_name["chat gpt-4o"].component == "openai"
    assert by_name["chat gpt-4o-mini"].parent_span_id == by_name["execute_tool search"].span_id
    assert by_name["invoke_agent planner"].parent_span_id is None
    assert by_name["chat gpt-4o"].data["kind"] == "CLIENT"
    assert by_name["chat gpt-4o"].data["attributes"]["gen_ai.usage.input_tokens"] == 100


def test_a_failing_agent_span_fails_the_execution_and_keeps_the_tool_error(store, otel):
    tracer, _ = otel
    with pytest.raises(TimeoutError):
        with tracer.start_as_current_span("invoke_agent planner", attributes=AGENT):
            with tracer.start_as_current_span("execute_tool fetch", attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "fetch"}):
                raise TimeoutError("upstream took too long")
    (execution,) = store.executions.list()
    assert execution.status == "failed"
    assert execution.error == "TimeoutError: upstream took too long"
    tool = next(e for e in store.executions.events(execution.id) if e.component == "fetch")
    assert tool.severity == "error"
    assert tool.error_code == "TimeoutError" and tool.error_message == "upstream took too long"
    assert "raise TimeoutError" in tool.error_stack


def test_an_interrupted_agent_span_is_cancelled(store, otel):
    tracer, _ = otel
    with pytest.raises(KeyboardInterrupt):
        with tracer.start_as_current_span("invoke_agent planner", attributes=AGENT):
            chat(tracer, 1, 1)
            raise KeyboardInterrupt
    (execution,) = store.executions.list()
    assert execution.status == "cancelled" and execution.error == "KeyboardInterrupt"
    assert len(store.executions.events(execution.id)) == 2


def test_a_cancelled_asyncio_agent_is_cancelled(store, otel):
    tracer, _ = otel
    started = asyncio.Event()

    async def agent() -> None:
        with tracer.start_as_current_span("invoke_agent planner", attributes=AGENT):
            started.set()
            await asyncio.sleep(3600)

    async def main() -> None:
        task = asyncio.create_task(agent())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (execution,) = store.executions.list()
    assert execution.status == "cancelled" and execution.error == "CancelledError"


def test_a_span_named_invoke_agent_without_attributes_is_an_agent_too(store, otel):
    tracer, _ = otel
    with tracer.start_as_current_span("invoke_agent"):
        pass
    with tracer.start_as_current_span("invoke_agent reviewer"):
        pass
    assert sorted((e.agent_type, e.status) for e in store.executions.list()) == [
        ("invoke_agent", "completed"),
        ("reviewer", "completed"),
    ]


def test_attributes_set_after_the_start_still_name_the_agent(store, otel):
    tracer, _ = otel
    with tracer.start_as_current_span("invoke_agent") as span:
        span.set_attributes({"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "late-namer", "gen_ai.request.model": "m2"})
    (execution,) = store.executions.list()
    assert (execution.agent_type, execution.model) == ("late-namer", "m2")


def test_usage_on_the_agent_span_itself_is_not_added_to_its_childrens(store, otel):
    tracer, _ = otel
    with tracer.start_as_current_span("invoke_agent planner", attributes=AGENT) as agent:
        chat(tracer, 10, 1)
        agent.set_attribute("gen_ai.usage.input_tokens", 500)
        agent.set_attribute("gen_ai.usage.output_tokens", 50)
        agent.set_attribute("syncstore.cost", 0.25)
    (execution,) = store.executions.list()
    assert execution.token_usage == {"input_tokens": 500, "output_tokens": 50, "total_tokens": 550}
    assert execution.cost == 0.25


def test_spans_inside_track_link_to_that_run(store, otel):
    tracer, _ = otel
    with store.executions.track("hand-made", correlation_id="req-5") as run:
        chat(tracer, 3, 4)
    (event,) = store.executions.events(run.id)
    assert event.data["name"] == "chat gpt-4o" and event.correlation_id == "req-5"
    assert [e.id for e in store.executions.list()] == [run.id]  # no second execution


def test_spans_outside_any_run_are_kept_unlinked(store, otel):
    tracer, _ = otel
    with tracer.start_as_current_span("healthcheck", attributes={"syncstore.correlation_id": "probe-1"}):
        pass
    (event,) = store.events.for_correlation("probe-1")
    assert event.execution_id is None and event.component == "tests.agent" and event.operation == "healthcheck"
    assert store.executions.list() == []


def test_track_picks_up_the_current_span_ids(store, otel):
    tracer, _ = otel
    with tracer.start_as_current_span("outer") as span:
        with store.executions.track("inside-a-span") as run:
            pass
    ctx = span.get_span_context()
    assert (run.trace_id, store.executions.get(run.id).span_id) == (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")


# --- OTLP JSON ----------------------------------------------------------------------


def _spans_of_every_shape(tracer) -> None:
    remote = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "abc")]),
    )
    linked = SpanContext(trace_id=0x1234, span_id=0x5678, is_remote=False)
    with tracer.start_as_current_span(
        "invoke_agent planner",
        context=trace.set_span_in_context(NonRecordingSpan(remote)),
        kind=SpanKind.SERVER,
        attributes={**AGENT, "flag": True, "count": 3, "ratio": 0.25, "names": ["a", "b"], "ints": [1, 2], "floats": [0.5], "bools": [True, False]},
        links=[Link(linked, {"why": "retry of"})],
    ) as agent:
        agent.add_event("plan ready", {"steps": 3, "ok": True})
        chat(tracer, 7, 8)
        with tracer.start_as_current_span("execute_tool x", attributes={"gen_ai.tool.name": "x"}) as tool:
            tool.set_status(Status(StatusCode.ERROR, "tool broke"))
        with tracer.start_as_current_span("verify") as verify:
            verify.set_status(Status(StatusCode.OK))


def _as_proto(document: dict):
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    # OTLP/JSON writes ids as hex; protobuf's generic JSON mapping reads bytes as base64.
    def ids_to_base64(node):
        if isinstance(node, dict):
            return {
                k: base64.b64encode(bytes.fromhex(v)).decode() if k in ("traceId", "spanId", "parentSpanId") and v else ids_to_base64(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [ids_to_base64(v) for v in node]
        return node

    return json_format.ParseDict(ids_to_base64(document), ExportTraceServiceRequest())


def _flatten(request) -> dict:
    """span id -> (resource, scope, span) as comparable dicts, attribute lists sorted."""
    from google.protobuf import json_format

    def normal(node):
        if isinstance(node, dict):
            return {k: normal(v) for k, v in node.items()}
        if isinstance(node, list):
            items = [normal(v) for v in node]
            if items and all(isinstance(i, dict) and "key" in i for i in items):
                items.sort(key=lambda i: i["key"])
            return items
        return node

    out = {}
    for resource_spans in request.resource_spans:
        resource = normal(json_format.MessageToDict(resource_spans.resource))
        for scope_spans in resource_spans.scope_spans:
            scope = normal(json_format.MessageToDict(scope_spans.scope))
            for span in scope_spans.spans:
                out[span.span_id] = (resource, scope, normal(json_format.MessageToDict(span)))
    return out


def test_the_otlp_export_equals_what_the_sdk_exporter_would_have_sent(store, otel):
    pytest.importorskip("opentelemetry.exporter.otlp.proto.common")
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    tracer, memory = otel
    _spans_of_every_shape(tracer)
    finished = memory.get_finished_spans()
    assert len(finished) == 4
    official = _flatten(encode_spans(finished))
    exported = json.loads(otlp.export_json(store))
    ours = _flatten(_as_proto(exported))
    assert ours.keys() == official.keys()
    for span_id, expected in official.items():
        assert ours[span_id] == expected
    # The wire details a collector's JSON reader insists on.
    span = exported["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16
    assert isinstance(span["startTimeUnixNano"], str) and isinstance(span["kind"], int)


def test_export_filters_and_files(store, otel, tmp_path):
    tracer, _ = otel
    with tracer.start_as_current_span("invoke_agent planner", attributes=AGENT):
        chat(tracer, 1, 1)
    with tracer.start_as_current_span("other trace"):
        pass
    (execution,) = store.executions.list()
    path = tmp_path / "spans.json"
    assert otlp.write_json(store, path, execution_id=execution.id) == 2
    document = json.loads(path.read_text())
    names = [s["name"] for rs in document["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert sorted(names) == ["chat gpt-4o", "invoke_agent planner"]
    every = json.loads(otlp.export_json(store))
    assert sum(len(ss["spans"]) for rs in every["resourceSpans"] for ss in rs["scopeSpans"]) == 3
    by_trace = json.loads(otlp.export_json(store, trace_id=execution.trace_id))
    assert sum(len(ss["spans"]) for rs in by_trace["resourceSpans"] for ss in rs["scopeSpans"]) == 2


def test_events_that_are_not_spans_are_not_exported(store):
    store.events.emit("step", trace_id="a" * 32, span_id="b" * 16)
    assert otlp.export_json(store) == '{"resourceSpans":[]}'
