"""Time travel: replay without side effects, the state at any step, fork, diff."""

from __future__ import annotations

import pytest

from syncstore.errors import WorkflowError
from syncstore.workflows import Condition, Parallel, WaitForSignal


@pytest.fixture
def pipeline(registry):
    calls = []
    seen = {}

    @registry.step
    def load(ctx):
        calls.append("load")
        seen["load"] = dict(ctx.state)
        return list(range(ctx.input["n"]))

    @registry.step
    def total(ctx):
        calls.append("total")
        seen["total"] = dict(ctx.state)
        return sum(ctx.state["load"]) * ctx.input.get("factor", 1)

    @registry.step
    def praise(ctx):
        calls.append("praise")
        seen["praise"] = dict(ctx.state)
        return f"{ctx.state['total']} is a lot"

    @registry.step
    def shrug(ctx):
        calls.append("shrug")
        return "meh"

    spec = registry.workflow(
        "sums",
        steps=[load, total, Condition("big", when="state.total > 10", then=[praise], otherwise=[shrug])],
        output=None,
    )
    return spec, calls, seen


def test_replay_reproduces_every_state_and_runs_nothing(flows, pipeline):
    spec, calls, seen = pipeline
    done = flows.execute(spec, input={"n": 6})
    before = list(calls)
    replay = flows.replay(done.id)
    assert calls == before  # no step function ran
    assert replay.complete and replay.deterministic and replay.output == done.output
    assert [(s.number, s.id) for s in replay.steps] == [(1, "load"), (2, "total"), (3, "big"), (4, "praise")]
    assert all(s.matches_record for s in replay.steps)
    # The state after each step is the state the next step was handed.
    assert flows.state_at(done.id, 0) == {} == seen["load"]
    assert flows.state_at(done.id, 1) == seen["total"]
    assert flows.state_at(done.id, 3) == seen["praise"]
    assert flows.state_at(done.id, 4) == done.output
    with pytest.raises(WorkflowError, match="did not run"):
        flows.state_at(done.id, 5)  # shrug: the other branch


def test_replay_stops_where_the_record_ends_and_detects_tampering(flows, registry, store, pipeline):
    spec, _, _ = pipeline
    gated = registry.workflow("gated", steps=[*spec.definition.steps[:2], WaitForSignal("ok")])
    waiting = flows.execute(gated, input={"n": 3})
    partial = flows.replay(waiting.id)
    assert not partial.complete and partial.stopped_at == 3 and partial.deterministic

    done = flows.execute(spec, input={"n": 6})
    # Change a recorded output behind the engine's back (the table is append-only
    # for the API; raw SQL stands in for a corrupted or hand-edited file).
    store.connection.execute(
        "update execution_snapshots set output = '999' where execution_id = ? and step_name = 'total' and kind = 'step_end'",
        (done.id,),
    )
    tampered = flows.replay(done.id)
    assert not tampered.deterministic
    assert any("'total'" in m for m in tampered.mismatches)


def test_fork_reuses_earlier_steps_and_reruns_the_rest_with_a_new_input(flows, pipeline):
    spec, calls, _ = pipeline
    original = flows.execute(spec, input={"n": 6})  # total 15: praise
    calls.clear()
    forked = flows.fork(original.id, from_step=2, input={"n": 6, "factor": 0})
    assert forked.status == "pending" and forked.parent_execution_id == original.id
    assert forked.triggered_by == "fork" and forked.metadata["fork"]["from_step"] == 2
    done = flows.run(forked.id)
    assert calls == ["total", "shrug"]  # load was reused, not run again
    assert done.output == {"load": [0, 1, 2, 3, 4, 5], "total": 0, "shrug": "meh"}
    assert flows.replay(done.id).deterministic

    diff = flows.diff(original.id, done.id)
    assert diff.input_differs
    assert diff.first_divergence is not None and diff.first_divergence.id == "total"
    assert "output 15 in a, 0 in b" in diff.describe()
    reasons = {s.id: s.reason for s in diff.steps}
    assert reasons["load"] is None and reasons["praise"] == "ran only in a" and reasons["shrug"] == "ran only in b"


def test_fork_with_a_changed_state(flows, pipeline):
    spec, calls, _ = pipeline
    original = flows.execute(spec, input={"n": 6})
    calls.clear()
    forked = flows.run(flows.fork(original.id, from_step=2, state={"load": [100]}).id)
    assert calls == ["total", "praise"]
    assert forked.output["total"] == 100
    assert flows.replay(forked.id).deterministic  # the patch replays at the same point
    assert flows.state_at(forked.id, 1) == {"load": [0, 1, 2, 3, 4, 5]}  # recorded before the fork point


def test_fork_refuses_a_step_inside_a_parallel_branch(flows, registry):
    @registry.step
    def leaf(ctx):
        return 1

    done = flows.execute(registry.workflow("par", steps=[Parallel("p", branches=[[leaf.call("x")], [leaf.call("y")]])]))
    with pytest.raises(WorkflowError, match="inside a parallel"):
        flows.fork(done.id, from_step=2)
    with pytest.raises(WorkflowError, match="between 1 and 3"):
        flows.fork(done.id, from_step=9)
    assert flows.run(flows.fork(done.id, from_step=1).id).output == {"x": 1, "y": 1}


def test_diff_of_two_equal_runs_and_of_a_failure(flows, registry):
    @registry.step(max_attempts=1)
    def check(ctx):
        if ctx.input["fail"]:
            raise ValueError("bad")
        return "fine"

    spec = registry.workflow("check", steps=[check])
    a = flows.execute(spec, input={"fail": False})
    b = flows.execute(spec, input={"fail": False})
    same = flows.diff(a.id, b.id)
    assert same.first_divergence is None and not same.input_differs
    assert same.describe() == "the executions agree step by step"
    c = flows.execute(spec, input={"fail": True})
    failing = flows.diff(a.id, c.id)
    assert failing.first_divergence is not None and failing.first_divergence.reason == "completed in a, failed in b"


def test_diff_across_versions_aligns_steps_by_id(flows, registry):
    @registry.step
    def first(ctx):
        return 1

    @registry.step
    def second(ctx):
        return 2 * ctx.input

    v1 = flows.execute(registry.workflow("evolving", version=1, steps=[first, second]), input=1)
    v2 = flows.execute(registry.workflow("evolving", version=2, steps=[first, second.call(params={"v": 2})]), input=3)
    diff = flows.diff(v1.id, v2.id)
    assert diff.first_divergence is not None and diff.first_divergence.id == "second"
