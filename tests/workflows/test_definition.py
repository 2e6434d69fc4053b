"""Definitions: the JSON form, validation, numbering, versions and pinning."""

from __future__ import annotations

import pytest

from syncstore.errors import WorkflowDefinitionError, WorkflowError, WorkflowVersionError
from syncstore.workflows import Condition, Parallel, Step, WaitForSignal
from syncstore.workflows import definition as defs

JSON = {
    "steps": [
        {"kind": "step", "id": "fetch", "max_attempts": 3},
        {
            "kind": "condition",
            "id": "big",
            "when": "len(state.fetch) > 2",
            "then": [{"kind": "step", "id": "summarise", "function": "fetch"}],
            "else": [{"kind": "wait-for-signal", "id": "approval"}],
        },
        {"kind": "parallel", "id": "fan", "branches": [[{"kind": "step", "id": "left"}], [{"kind": "step", "id": "right"}]]},
    ],
    "output": "summarise",
}


def test_json_definition_parses_and_numbers_nodes_in_reading_order():
    plan = defs.plan(JSON)
    assert [n.id for n in plan.nodes] == ["fetch", "big", "summarise", "approval", "fan", "left", "right"]
    assert plan.numbers["approval"] == 4
    assert isinstance(plan.node(4), WaitForSignal)  # "wait-for-signal" is accepted as a spelling
    assert plan.functions == ["fetch", "left", "right"]
    assert plan.in_parallel == {6, 7}
    assert plan.total == 7


def test_canonical_form_ignores_defaults_and_key_order():
    explicit = {"steps": [{"id": "a", "kind": "step", "params": {}}], "output": None}
    assert defs.plan(explicit).canonical == defs.plan({"steps": [{"kind": "step", "id": "a"}]}).canonical
    assert defs.plan(explicit).sha256 != defs.plan({"steps": [{"kind": "step", "id": "b"}]}).sha256


@pytest.mark.parametrize(
    "broken, problem",
    [
        ({"steps": []}, "at least one step"),
        ({"steps": [{"kind": "step", "id": "a"}, {"kind": "step", "id": "a"}]}, "used twice"),
        ({"steps": [{"kind": "step", "id": "has space"}]}, "id"),
        ({"steps": [{"kind": "teleport", "id": "a"}]}, "invalid workflow definition"),
        ({"steps": [{"kind": "step", "id": "a", "surprise": 1}]}, "invalid workflow definition"),
        ({"steps": [{"kind": "condition", "id": "c"}]}, "exactly one"),
        ({"steps": [{"kind": "condition", "id": "c", "when": "import os"}]}, "syntax"),
        ({"steps": [{"kind": "parallel", "id": "p", "branches": []}]}, "at least one branch"),
        ({"steps": [{"kind": "step", "id": "a", "max_attempts": 0}]}, "max_attempts"),
        ({"steps": [{"kind": "step", "id": "a", "timeout_seconds": 1, "transactional": True}]}, "transactional"),
        ({"steps": [{"kind": "step", "id": "a", "max_attempts": "3"}]}, "invalid workflow definition"),
        ("{not json", "invalid workflow definition"),
    ],
)
def test_bad_definitions_are_refused_with_the_reason(broken, problem):
    with pytest.raises(WorkflowDefinitionError, match=problem):
        defs.plan(broken)


def test_python_builder_writes_the_function_policy_into_the_definition(registry):
    @registry.step(max_attempts=4, timeout_seconds=2.5)
    def fetch(ctx):
        return [1, 2, 3]

    spec = registry.workflow(
        "p",
        steps=[fetch, Condition("big", when="len(state.fetch) > 2", then=["fetch_again"], otherwise=[])],
    )
    first = spec.definition.steps[0]
    assert isinstance(first, Step) and first.max_attempts == 4 and first.timeout_seconds == 2.5
    assert spec.definition.steps[1].then[0] == Step("fetch_again", function="fetch_again")  # type: ignore[union-attr]
    with pytest.raises(WorkflowDefinitionError, match="already registered"):

        @registry.step(name="fetch")
        def other(ctx):
            return None


def test_registering_a_changed_definition_under_the_same_version_is_refused(flows, registry):
    @registry.step
    def a(ctx):
        return 1

    @registry.step
    def b(ctx):
        return 2

    first = flows.register(registry.workflow("flow", version=1, steps=[a]))
    assert flows.register(registry.workflow("flow", version=1, steps=[a])).id == first.id  # same: a no-op
    with pytest.raises(WorkflowVersionError):
        flows.register(registry.workflow("flow", version=1, steps=[a, b]))
    second = flows.register(registry.workflow("flow", version=2, steps=[a, b]))
    assert second.version == 2 and flows.definition("flow").id == second.id
    assert [w.version for w in flows.definitions("flow")] == [2, 1]


def test_an_execution_stays_on_the_version_it_started_with(flows, registry):
    calls = []

    @registry.step
    def one(ctx):
        calls.append("one")
        return 1

    @registry.step
    def two(ctx):
        calls.append("two")
        return 2

    @registry.step
    def three(ctx):
        calls.append("three")
        return 3

    v1 = registry.workflow("pinned", version=1, steps=[one, two])
    old = flows.start(v1)
    flows.pause(old.id)  # idle: paused at once, before any step
    v2 = registry.workflow("pinned", version=2, steps=[three])
    flows.register(v2)
    new = flows.execute("pinned")  # by name: the newest version
    assert new.workflow_version == 2 and new.output == {"three": 3}
    flows.resume(old.id)
    resumed = flows.run(old.id)
    assert resumed.workflow_version == 1
    assert resumed.output == {"one": 1, "two": 2}
    assert calls == ["three", "one", "two"]


def test_a_definition_edited_behind_the_engine_is_not_run(flows, registry, store):
    @registry.step
    def one(ctx):
        return 1

    execution = flows.start(registry.workflow("edited", steps=[one]))
    store.update("workflows", execution.workflow_id, {"definition": {"steps": [{"kind": "step", "id": "one", "max_attempts": 9}]}})
    with pytest.raises(WorkflowError, match="changed after the execution started"):
        flows.run(execution.id)
    assert flows.recover() == []  # skipped, not a crash of the whole recovery


def test_an_execution_whose_definition_has_not_arrived_is_left_for_later(flows, registry, store):
    @registry.step
    def one(ctx):
        return 1

    orphan = flows.start(registry.workflow("orphan", steps=[one]))
    store.delete("workflows", orphan.workflow_id)  # as if sync had brought the execution but not its workflow
    runnable = flows.start(registry.workflow("fine", steps=[one]))
    with pytest.raises(WorkflowError, match="not in this store"):
        flows.run(orphan.id)
    assert [r.id for r in flows.recover()] == [runnable.id]
    assert flows.get(orphan.id).status == "pending"


def test_missing_step_functions_are_named_and_nothing_runs(flows, registry):
    flows.define("json_only", {"steps": [{"kind": "step", "id": "nowhere"}]})
    execution = flows.start("json_only")
    with pytest.raises(WorkflowDefinitionError, match="'nowhere'"):
        flows.run(execution.id)
    assert flows.get(execution.id).status == "pending"
    assert flows.recover() == []  # left for a process that has the code


def test_parallel_and_wait_nodes_build_from_python(registry):
    spec = registry.workflow(
        "shapes",
        steps=[Parallel("fan", branches=[["x"], ["y"]]), WaitForSignal("ok", signal="go", timeout_seconds=5)],
        output="ok",
    )
    plan = defs.plan(spec.definition)
    assert [n.id for n in plan.nodes] == ["fan", "x", "y", "ok"]
    assert defs.signal_name(plan.node(4)) == "go"  # type: ignore[arg-type]
