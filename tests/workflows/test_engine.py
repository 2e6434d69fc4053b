"""The engine: branches, retries with backoff, timeouts, cancel, pause, signals, exactly-once writes."""

from __future__ import annotations

import threading
import time

import pytest

from syncstore.errors import PermanentStepError, WorkflowError
from syncstore.workflows import Condition, Parallel, Step, WaitForSignal, retry


def ends(store, execution_id, kind="step_end"):
    return store.query(
        "select step_number, step_name, metadata from execution_snapshots where execution_id = ? and kind = ? "
        "order by timestamp, id",
        (execution_id, kind),
    )


def test_steps_conditions_and_parallel_branches(flows, registry):
    seen = {}

    @registry.step
    def count(ctx):
        return len(ctx.input["items"])

    @registry.step
    def label(ctx):
        seen["label"] = dict(ctx.state)
        return ctx.params["text"]

    @registry.step
    def left(ctx):
        return "L"

    @registry.step
    def right(ctx):
        return "R"

    spec = registry.workflow(
        "shape",
        steps=[
            count,
            Condition(
                "many",
                when="state.count > 2",
                then=[label.call("big", params={"text": "many"})],
                otherwise=[label.call("small", params={"text": "few"})],
            ),
            Parallel("fan", branches=[[left, Step("shared", function="left")], [right, Step("shared2", function="right", into="shared")]]),
        ],
    )
    many = flows.execute(spec, input={"items": [1, 2, 3]})
    assert many.status == "completed"
    # The later branch wins a key both branches wrote; each branch saw the state before the fan-out.
    assert many.output == {"count": 3, "big": "many", "left": "L", "right": "R", "shared": "R"}
    assert seen["label"] == {"count": 3}
    few = flows.execute(spec, input={"items": [1]})
    assert few.output["small"] == "few" and "big" not in few.output
    decision = [r for r in ends(flows.store, few.id) if r["step_name"] == "many"]
    assert len(decision) == 1  # the condition's decision is recorded once


def test_backoff_grows_exponentially_and_is_capped():
    rule = retry.Policy(max_attempts=6, backoff_seconds=0.5, backoff_multiplier=3.0, max_backoff_seconds=5.0, timeout_seconds=None, transactional=False)
    assert [retry.delay(rule, n) for n in range(1, 6)] == [0.5, 1.5, 4.5, 5.0, 5.0]


def test_retries_until_success_with_durable_attempt_counts(flows, registry, store):
    attempts = []

    @registry.step(max_attempts=4, backoff_seconds=0.01, backoff_multiplier=2.0)
    def flaky(ctx):
        attempts.append((ctx.attempt, ctx.idempotency_key))
        if ctx.attempt < 3:
            raise ConnectionError(f"try {ctx.attempt}")
        return "ok"

    done = flows.execute(registry.workflow("retry", steps=[flaky]))
    assert done.status == "completed" and done.output == {"flaky": "ok"}
    assert [a for a, _ in attempts] == [1, 2, 3]
    assert len({key for _, key in attempts}) == 1  # the same key on every attempt
    errors = ends(store, done.id, "error")
    assert len(errors) == 2 and "ConnectionError: try 1" in errors[0]["metadata"]


def test_retries_run_out_and_the_execution_fails(flows, registry):
    @registry.step(max_attempts=3, backoff_seconds=0.0)
    def broken(ctx):
        raise ValueError("always")

    @registry.step
    def after(ctx):
        raise AssertionError("must not run")

    done = flows.execute(registry.workflow("fails", steps=[broken, after]))
    assert done.status == "failed"
    assert "ValueError: always" in done.error
    assert len(ends(flows.store, done.id, "error")) == 3
    assert [r.status for r in flows.timeline(done.id).rows] == ["failed", "skipped"]


def test_a_permanent_error_and_a_non_json_output_are_not_retried(flows, registry):
    calls = []

    @registry.step(max_attempts=5, backoff_seconds=0.0)
    def refuse(ctx):
        calls.append("refuse")
        raise PermanentStepError("bad input, retrying cannot help")

    @registry.step(max_attempts=5, backoff_seconds=0.0)
    def unserialisable(ctx):
        calls.append("object")
        return object()

    assert flows.execute(registry.workflow("permanent", steps=[refuse])).status == "failed"
    failed = flows.execute(registry.workflow("nonjson", steps=[unserialisable]))
    assert failed.status == "failed" and "not JSON" in failed.error
    assert calls == ["refuse", "object"]


def test_a_timeout_fails_the_attempt_and_tells_the_step(flows, registry):
    noticed = threading.Event()

    @registry.step(max_attempts=2, backoff_seconds=0.0, timeout_seconds=0.05)
    def slow(ctx):
        if ctx.attempt == 2:
            return "second try in time"
        while not ctx.stop_requested:  # a long step that checks in
            time.sleep(0.005)
        noticed.set()
        return "too late"

    done = flows.execute(registry.workflow("timeout", steps=[slow]))
    assert done.status == "completed" and done.output == {"slow": "second try in time"}
    assert noticed.wait(5)
    errors = ends(flows.store, done.id, "error")
    assert len(errors) == 1 and "timed out" in errors[0]["metadata"]

    @registry.step(timeout_seconds=0.05)
    def hangs(ctx):
        time.sleep(0.5)

    hung = flows.execute(registry.workflow("timeout2", steps=[hangs]))
    assert hung.status == "failed" and "StepTimeout" in hung.error


def test_cancel_takes_effect_at_the_next_boundary(flows, registry):
    ran = []

    @registry.step
    def work(ctx):
        ran.append(ctx.step_id)
        if ctx.step_id == "b":
            flows.cancel(ctx.execution_id)  # written while the step runs
        return ctx.step_id

    spec = registry.workflow("cancel", steps=[work.call("a"), work.call("b"), work.call("c")])
    done = flows.execute(spec)
    assert done.status == "cancelled" and done.completed_at is not None
    assert ran == ["a", "b"]
    assert [r["step_name"] for r in ends(flows.store, done.id)] == ["a", "b"]  # b's result was kept
    with pytest.raises(WorkflowError, match="cancelled"):
        flows.resume(done.id)


def test_cancel_and_pause_apply_at_once_when_nothing_runs_the_execution(flows, registry):
    @registry.step
    def one(ctx):
        return 1

    spec = registry.workflow("idle", steps=[one])
    pending = flows.start(spec)
    assert flows.pause(pending.id).status == "paused"
    assert flows.run(pending.id).status == "paused"  # not resumed: run() leaves it
    resumed = flows.resume(pending.id)
    assert resumed.status == "pending" and resumed.requested_status == "running"
    assert flows.cancel(pending.id).status == "cancelled"
    assert flows.run(pending.id).status == "cancelled"


def test_pause_then_resume_runs_each_step_once(flows, registry):
    ran = []

    @registry.step
    def work(ctx):
        ran.append(ctx.step_id)
        if ctx.step_id == "b":
            flows.pause(ctx.execution_id)
        return ctx.step_id.upper()

    spec = registry.workflow("pause", steps=[work.call(x) for x in "abcd"])
    paused = flows.execute(spec)
    assert paused.status == "paused" and paused.current_step == 3 and paused.paused_at is not None
    assert paused.state == {"a": "A", "b": "B"}
    assert flows.recover() == []  # paused and not resumed: left alone
    flows.resume(paused.id)
    [done] = flows.recover()
    assert done.status == "completed" and done.output == {"a": "A", "b": "B", "c": "C", "d": "D"}
    assert ran == ["a", "b", "c", "d"]


def test_transactional_step_writes_commit_with_the_record_and_roll_back_on_error(flows, registry, store):
    store.connection.execute("create table ledger (entry text)")

    @registry.step(transactional=True, max_attempts=3, backoff_seconds=0.0)
    def book(ctx):
        ctx.store.connection.execute("insert into ledger values (?)", (f"attempt {ctx.attempt}",))
        ctx.store.tasks.create(f"task from attempt {ctx.attempt}")
        if ctx.attempt < 3:
            raise RuntimeError("rolled back with my writes")
        return "booked"

    done = flows.execute(registry.workflow("ledger", steps=[book]))
    assert done.status == "completed"
    assert [r["entry"] for r in store.query("select entry from ledger")] == ["attempt 3"]
    assert [t.title for t in store.tasks.list()] == ["task from attempt 3"]
    assert len(ends(store, done.id, "error")) == 2


def test_wait_for_signal_approve_reject_and_early_signals(flows, registry):
    @registry.step
    def draft(ctx):
        return "text"

    @registry.step
    def publish(ctx):
        return f"published by {ctx.state['review']['data']['by']}"

    spec = registry.workflow("review", steps=[draft, WaitForSignal("review"), publish])
    waiting = flows.execute(spec)
    assert waiting.status == "waiting" and waiting.lease_owner is None
    assert flows.recover() == []  # no signal yet: nothing to do
    flows.signal(waiting.id, "review", data={"by": "ada"})
    [done] = flows.recover()
    assert done.status == "completed" and done.output["publish"] == "published by ada"
    assert done.output["review"]["approved"] is True

    rejected = flows.execute(spec)
    flows.signal(rejected.id, "review", decision="reject", data={"by": "bob"})
    [failed] = flows.recover()
    assert failed.status == "failed" and "rejected" in failed.error

    early = flows.start(spec)
    flows.signal(early.id, "review", data={"by": "eve"})  # before the wait is reached
    assert flows.run(early.id).output["publish"] == "published by eve"


def test_a_rejection_can_continue_and_a_wait_can_time_out(flows, registry):
    @registry.step
    def decide(ctx):
        return "go" if ctx.state["gate"]["approved"] else "stop"

    spec = registry.workflow("gate", steps=[WaitForSignal("gate", on_reject="continue"), decide])
    execution = flows.execute(spec)
    flows.signal(execution.id, "gate", decision="reject")
    assert flows.run(execution.id).output["decide"] == "stop"

    timed = registry.workflow("deadline", steps=[WaitForSignal("never", timeout_seconds=0.05)])
    waiting = flows.execute(timed)
    assert waiting.status == "waiting" and waiting.metadata["waiting_for"]["deadline"]
    time.sleep(0.1)
    [failed] = flows.recover()
    assert failed.status == "failed" and "no 'never' signal" in failed.error


def test_signals_and_control_refuse_bad_requests(flows, registry):
    @registry.step
    def one(ctx):
        return 1

    done = flows.execute(registry.workflow("done", steps=[one]))
    with pytest.raises(WorkflowError, match="completed"):
        flows.signal(done.id, "x")
    with pytest.raises(WorkflowError, match="completed"):
        flows.pause(done.id)
    pending = flows.start(registry.workflow("done", steps=[one]))
    with pytest.raises(ValueError, match="decision"):
        flows.signal(pending.id, "x", decision="maybe")


def test_failed_attempts_before_a_crash_count_against_the_limit(flows, registry, store):
    @registry.step(max_attempts=2, backoff_seconds=0.0)
    def never(ctx):
        raise RuntimeError("no")

    spec = registry.workflow("limit", steps=[never])
    execution = flows.start(spec)
    # As if two attempts failed and were recorded, then the process died.
    for attempt in (1, 2):
        store.insert(
            "execution_snapshots",
            {"execution_id": execution.id, "step_number": 1, "step_name": "never", "kind": "error",
             "timestamp": "2025-01-01T00:00:0%d.000000Z" % attempt, "metadata": {"attempt": attempt}},
        )
    done = flows.run(execution.id)
    assert done.status == "failed" and "after 2 attempts" in done.error


def test_json_defined_workflow_runs_registered_functions(flows, registry):
    @registry.step
    def hello(ctx):
        return f"hello {ctx.params['who']}"

    flows.define(
        "json_flow",
        '{"steps": [{"kind": "step", "id": "greet", "function": "hello", "params": {"who": "json"}}], "output": "greet"}',
    )
    done = flows.execute("json_flow")
    assert done.output == "hello json"
    assert flows.definition("json_flow").definition["steps"][0]["function"] == "hello"
