"""Pause, resume, cancel and signals written on another replica take effect after sync.

Two replica files stand for two machines; ``replicate`` carries one's change
log to the other, as the sync client would. Replica A runs the execution; the
requests are written on replica B.
"""

from __future__ import annotations

import pytest

import syncstore
from syncstore.workflows import WaitForSignal, Workflows

from .conftest import replicate


class Pair:
    """Replicas A (runs the workflow) and B (only steers it), with sync cursors."""

    def __init__(self, tmp_path, registry):
        self.a = syncstore.open(str(tmp_path / "a.db"))
        self.b = syncstore.open(str(tmp_path / "b.db"))
        self.flows_a = Workflows(self.a, registry=registry)
        self.flows_b = Workflows(self.b, registry=registry)
        self.a_to_b = 0
        self.b_to_a = 0

    def sync(self) -> None:
        self.a_to_b = replicate(self.a, self.b, self.a_to_b)
        self.b_to_a = replicate(self.b, self.a, self.b_to_a)
        self.a_to_b = replicate(self.a, self.b, self.a_to_b)

    def close(self) -> None:
        self.a.close()
        self.b.close()


@pytest.fixture
def pair(tmp_path, registry):
    made = Pair(tmp_path, registry)
    yield made
    made.close()


def test_a_pause_written_on_another_replica_stops_the_run_at_the_next_boundary(pair, registry):
    ran = []

    @registry.step
    def work(ctx):
        ran.append(ctx.step_id)
        if ctx.step_id == "s3":
            # Meanwhile, on the other machine: someone pauses it, and sync runs.
            pair.sync()
            assert pair.flows_b.get(ctx.execution_id).status == "running"
            pair.flows_b.pause(ctx.execution_id)
            pair.sync()
        return int(ctx.step_id[1:])

    spec = registry.workflow("synced_pause", steps=[work.call(f"s{i}") for i in range(1, 7)])
    paused = pair.flows_a.execute(spec)
    assert paused.status == "paused"
    assert ran == ["s1", "s2", "s3"]
    assert paused.state == {"s1": 1, "s2": 2, "s3": 3}
    pair.sync()
    on_b = pair.flows_b.get(paused.id)
    assert on_b.status == "paused" and on_b.requested_status == "paused"
    assert len(pair.flows_b.snapshots.list(paused.id, kinds=["step_end"])) == 3  # B sees the progress too

    pair.flows_b.resume(paused.id)
    pair.sync()
    [done] = pair.flows_a.recover()
    assert done.status == "completed"
    assert done.output == {f"s{i}": i for i in range(1, 7)}
    assert ran == ["s1", "s2", "s3", "s4", "s5", "s6"]  # nothing ran twice
    pair.sync()
    assert pair.flows_b.get(done.id).status == "completed"


def test_the_latest_request_wins_across_replicas(pair, registry):
    @registry.step
    def one(ctx):
        return 1

    execution = pair.flows_a.start(registry.workflow("latest", steps=[one]))
    pair.sync()
    pair.flows_b.pause(execution.id)
    pair.flows_a.pause(execution.id)
    pair.flows_a.resume(execution.id)  # written last
    pair.sync()
    assert pair.a.get("workflow_executions", execution.id)["requested_status"] == "running"
    assert pair.b.get("workflow_executions", execution.id)["requested_status"] == "running"
    [done] = pair.flows_a.recover()
    assert done.status == "completed"


def test_a_signal_sent_on_another_replica_is_consumed_after_sync(pair, registry):
    @registry.step
    def ship(ctx):
        return f"shipped, approved by {ctx.state['approval']['data']['by']}"

    spec = registry.workflow("approval", steps=[WaitForSignal("approval"), ship])
    waiting = pair.flows_a.execute(spec)
    assert waiting.status == "waiting"
    pair.sync()
    pair.flows_b.signal(waiting.id, "approval", data={"by": "reviewer on b"}, sent_by="b")
    assert pair.flows_a.recover() == []  # not synced yet: A has no signal
    pair.sync()
    [done] = pair.flows_a.recover()
    assert done.output["ship"] == "shipped, approved by reviewer on b"


def test_two_replicas_signalling_at_once_both_keep_their_signal(pair, registry):
    spec = registry.workflow("two_gates", steps=[WaitForSignal("first", signal="go"), WaitForSignal("second", signal="go")])
    waiting = pair.flows_a.execute(spec)
    pair.sync()
    pair.flows_a.signal(waiting.id, "go", data="from a")
    pair.flows_b.signal(waiting.id, "go", data="from b")
    pair.sync()
    [done] = pair.flows_a.recover()
    assert done.status == "completed"
    assert sorted([done.output["first"]["data"], done.output["second"]["data"]]) == ["from a", "from b"]


def test_a_cancel_written_on_another_replica_ends_the_run(pair, registry):
    ran = []

    @registry.step
    def work(ctx):
        ran.append(ctx.step_id)
        if ctx.step_id == "s1":
            pair.sync()
            pair.flows_b.cancel(ctx.execution_id)
            pair.sync()
        return ctx.step_id

    done = pair.flows_a.execute(registry.workflow("synced_cancel", steps=[work.call("s1"), work.call("s2")]))
    assert done.status == "cancelled" and ran == ["s1"]
