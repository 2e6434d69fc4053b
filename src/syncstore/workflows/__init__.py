"""Durable workflows: steps that survive crashes, pause anywhere, and can be replayed.

    from syncstore.workflows import step, workflow, Condition

    @step(max_attempts=3)
    def fetch(ctx):
        return {"items": ctx.params["n"]}

    @step
    def report(ctx):
        return f"{ctx.state['fetch']['items']} items"

    pipeline = workflow("pipeline", version=1, steps=[fetch.call(params={"n": 3}), report])

    with syncstore.open("agent.db") as store:
        store.workflows.recover()                 # finish what a crash interrupted
        run = store.workflows.execute(pipeline)   # run a new one now

Modules, one job each: ``definition`` (the JSON form and its nodes),
``expressions`` (the safe condition language), ``registry`` (step functions by
name), ``catalog`` (versions in the store), ``engine`` and ``runner``
(durable execution), ``lease`` and ``heartbeat`` (one owner at a time),
``control`` (pause, resume, cancel, signal), ``snapshots``, ``timetravel``
(replay, state at a step, fork, diff), ``timeline`` and ``htmlreport``
(pictures). See docs/workflows.md.
"""

from syncstore.workflows.api import Workflows
from syncstore.workflows.context import StepContext
from syncstore.workflows.definition import (
    Condition,
    Definition,
    Parallel,
    Step,
    WaitForSignal,
    WorkflowSpec,
)
from syncstore.workflows.expressions import ExpressionError
from syncstore.workflows.records import ExecutionRecord, SnapshotRecord, WorkflowRecord
from syncstore.workflows.registry import Registry, StepFunction, load_module, predicate, step, workflow
from syncstore.workflows.snapshots import Snapshots

__all__ = [
    "Condition",
    "Definition",
    "ExecutionRecord",
    "ExpressionError",
    "Parallel",
    "Registry",
    "SnapshotRecord",
    "Snapshots",
    "Step",
    "StepContext",
    "StepFunction",
    "WaitForSignal",
    "WorkflowRecord",
    "WorkflowSpec",
    "Workflows",
    "load_module",
    "predicate",
    "step",
    "workflow",
]
