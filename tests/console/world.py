"""Data the console tests look at, written through the library's public API."""

from __future__ import annotations

from typing import Any

import syncstore
from syncstore.workflows import Registry, Workflows

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def pipeline(store: syncstore.Store) -> tuple[Workflows, Any]:
    """A four-step workflow whose later steps depend on the input (so two runs
    with different inputs diverge at the first step), and the Workflows to run it."""
    registry = Registry()

    @registry.step
    def fetch(ctx):
        return {"n": ctx.input["n"], "items": list(range(ctx.input["n"]))}

    @registry.step
    def double(ctx):
        return ctx.state["fetch"]["n"] * 2

    @registry.step
    def summarise(ctx):
        return {"text": f"{ctx.state['double']} items", "ok": True}

    @registry.step
    def report(ctx):
        return f"{ctx.state['double']} items"

    spec = registry.workflow("pipeline", steps=[fetch, double, summarise, report])
    return Workflows(store, registry=registry), spec


def waiting_flow(store: syncstore.Store) -> tuple[Workflows, Any]:
    """A workflow that stops at a wait for the signal ``approval``."""
    from syncstore.workflows import WaitForSignal

    registry = Registry()

    @registry.step
    def prepare(ctx):
        return "prepared"

    @registry.step
    def ship(ctx):
        return "shipped"

    spec = registry.workflow("release", steps=[prepare, WaitForSignal(id="approval"), ship])
    return Workflows(store, registry=registry), spec


def run_agent(store: syncstore.Store, agent_type: str, *, events: int = 3, fail: bool = False, **fields: Any) -> str:
    """One tracked execution with some events; returns its id."""
    run_id = None
    try:
        with store.executions.track(agent_type, **fields) as run:
            run_id = run.id
            run.usage(input_tokens=10 * events, output_tokens=4 * events, cost=0.01)
            for i in range(events):
                store.events.emit(
                    "tool_call",
                    component=("shell", "model")[i % 2],
                    operation=f"op{i}",
                    duration_ms=5.0 + i,
                    data={"token_usage": {"input_tokens": 10, "output_tokens": 4}},
                )
            if fail:
                raise RuntimeError("the tool broke")
    except RuntimeError:
        pass
    store.events.flush()
    assert run_id is not None
    return run_id
