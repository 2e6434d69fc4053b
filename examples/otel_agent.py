"""An agent run traced with plain OpenTelemetry, recorded offline, shown in the CLI.

    .venv/bin/python examples/otel_agent.py                 # writes otel_agent.db
    .venv/bin/syncstore --db otel_agent.db executions list
    .venv/bin/syncstore --db otel_agent.db events tail --severity warn

The agent below knows nothing about syncstore: it uses the OpenTelemetry API
and the GenAI semantic conventions, as any instrumented agent would. The one
syncstore line is the tracer provider, whose span processor writes each
finished span into the local replica (no network needed; a collector being
down loses nothing), turns the ``invoke_agent`` span into an execution, and
links the model and tool spans to it. The spans are also written as OTLP JSON
for a collector to take later.
"""

from __future__ import annotations

import argparse
import os
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanKind

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import syncstore  # noqa: E402
from syncstore import otlp  # noqa: E402
from syncstore.cli.main import cli  # noqa: E402
from syncstore.otel import tracer_provider  # noqa: E402

tracer = trace.get_tracer("examples.otel_agent", "1.0")


# --- the agent: plain OpenTelemetry, no syncstore ----------------------------------------


def call_model(prompt: str) -> str:
    """A stand-in for an LLM call (deterministic, offline), traced as a GenAI chat span."""
    with tracer.start_as_current_span("chat tiny-model", kind=SpanKind.CLIENT) as span:
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "example",
                "gen_ai.request.model": "tiny-model",
                "gen_ai.response.model": "tiny-model-001",
            }
        )
        answer = f"notes on {prompt[:40]}"
        span.set_attribute("gen_ai.usage.input_tokens", len(prompt.split()) * 4)
        span.set_attribute("gen_ai.usage.output_tokens", len(answer.split()) * 4)
        span.set_attribute("syncstore.cost", 0.0004)
        return answer


def use_tool(name: str, query: str) -> str | None:
    with tracer.start_as_current_span(f"execute_tool {name}") as span:
        span.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name})
        if name == "web_fetch":
            # Offline: the fetch fails; the agent carries on without it.
            try:
                raise ConnectionError(f"no network to fetch {query!r}")
            except ConnectionError as exc:
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, str(exc)))
                return None
        return f"3 local documents about {query}"


def research(goal: str) -> str:
    agent = {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "researcher", "gen_ai.provider.name": "example"}
    with tracer.start_as_current_span("invoke_agent researcher", attributes=agent):
        plan = call_model(f"plan how to research: {goal}")
        found = [use_tool("local_search", goal), use_tool("web_fetch", goal)]
        return call_model(f"summarise {plan} with {[f for f in found if f]}")


# --- wiring it to syncstore -------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description="Trace an agent run with OpenTelemetry into a syncstore replica.")
    parser.add_argument("--db", default="otel_agent.db", help="the replica file (default: %(default)s)")
    parser.add_argument("--otlp", default="otel_agent_spans.json", help="where to write the spans as OTLP JSON")
    args = parser.parse_args()

    store = syncstore.open(args.db)
    provider = tracer_provider(store, resource=Resource.create({"service.name": "otel-agent-example"}))
    trace.set_tracer_provider(provider)

    summary = research("why the nightly build is slow")
    provider.shutdown()  # flushes the store's event buffer too
    print(f"agent answered: {summary}\n")

    (execution,) = store.executions.list(limit=1, order_by="created_at", descending=True)
    written = otlp.write_json(store, args.otlp, execution_id=execution.id)
    store.close()

    # What a person at the terminal would run next.
    print(f"$ syncstore --db {args.db} executions show {execution.id}")
    cli.main(["--db", args.db, "executions", "show", execution.id], prog_name="syncstore", standalone_mode=False)
    print(f"\n{written} spans also written to {args.otlp} (OTLP JSON, for a collector's /v1/traces)")


if __name__ == "__main__":
    main()
