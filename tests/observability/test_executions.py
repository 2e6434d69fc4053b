"""Executions: the status machine, track() and tracked(), crash and cancel paths."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

import syncstore
from syncstore.errors import NotFoundError, TransitionError, ValidationError
from syncstore.executions import TRANSITIONS

# --- the status machine -------------------------------------------------------------


def test_the_explicit_steps_walk_the_happy_path(store):
    created = store.executions.create("planner", task_id="task-1", input={"goal": "plan"})
    assert created.status == "pending" and created.started_at is None
    assert created.correlation_id == created.id  # its own operation, unless told otherwise
    running = store.executions.start(created.id)
    assert running.status == "running" and running.started_at is not None
    done = store.executions.complete(created.id, output={"plan": [1, 2]}, token_usage={"input_tokens": 3}, cost=0.5)
    assert done.status == "completed"
    assert done.output == {"plan": [1, 2]} and done.token_usage == {"input_tokens": 3} and done.cost == 0.5
    assert done.completed_at >= done.started_at
    expected = (done.completed_at - done.started_at).total_seconds() * 1000
    assert done.duration_ms == pytest.approx(expected)


@pytest.mark.parametrize("current", list(TRANSITIONS))
@pytest.mark.parametrize("requested", list(TRANSITIONS))
def test_every_transition_is_allowed_or_refused_as_the_table_says(store, current, requested):
    execution = store.executions.create("agent", status="pending")
    path = {"pending": [], "running": ["running"], "completed": ["running", "completed"],
            "failed": ["running", "failed"], "cancelled": ["cancelled"]}[current]  # fmt: skip
    for step in path:
        store.executions.transition(execution.id, step)
    assert store.executions.get(execution.id).status == current
    if requested in TRANSITIONS[current]:
        assert store.executions.transition(execution.id, requested).status == requested
    else:
        with pytest.raises(TransitionError) as refused:
            store.executions.transition(execution.id, requested)
        assert (refused.value.current, refused.value.requested) == (current, requested)
        assert refused.value.code == "invalid_transition"
        assert store.executions.get(execution.id).status == current  # nothing written


def test_a_new_execution_is_pending_or_running_only(store):
    with pytest.raises(ValidationError):
        store.executions.create("agent", status="completed")
    with pytest.raises(ValidationError):
        store.executions.create("  ")


def test_update_routes_a_status_change_through_the_machine(store):
    execution = store.executions.create("agent")
    with pytest.raises(TransitionError):
        store.executions.update(execution.id, status="completed")
    assert store.executions.update(execution.id, status="running", model="m1").model == "m1"
    assert store.executions.update(execution.id, provider="p").provider == "p"


def test_unknown_executions_and_statuses(store):
    with pytest.raises(NotFoundError):
        store.executions.start("01a215e8-0000-7000-8000-000000000000")
    execution = store.executions.create("agent")
    with pytest.raises(ValidationError):
        store.executions.transition(execution.id, "paused")


# --- track() ------------------------------------------------------------------------


def test_a_tracked_block_that_finishes_is_completed_with_its_usage(store):
    with store.executions.track("planner", task_id="t-9", input={"goal": "g"}, provider="openai") as run:
        store.events.emit("thinking", component="planner")
        run.usage(input_tokens=100, output_tokens=20, cost=0.002, model="gpt-4o")
        run.usage(input_tokens=50, output_tokens=5, cost=0.001, cached_input_tokens=30)
        run.output = {"answer": 42}
        assert store.executions.current() is run
    assert store.executions.current() is None
    done = store.executions.get(run.id)
    assert done.status == "completed" and done.error is None
    assert done.task_id == "t-9" and done.input == {"goal": "g"} and done.output == {"answer": 42}
    assert done.token_usage == {"input_tokens": 150, "output_tokens": 25, "total_tokens": 175, "cached_input_tokens": 30}
    assert done.cost == pytest.approx(0.003)
    assert (done.provider, done.model) == ("openai", "gpt-4o")
    assert done.duration_ms >= 0 and done.completed_at >= done.started_at
    (event,) = store.executions.events(run.id)
    assert event.event_type == "thinking" and event.correlation_id == done.correlation_id


def test_a_crash_inside_marks_it_failed_and_records_the_error(store):
    with pytest.raises(ZeroDivisionError) as crashed:
        with store.executions.track("planner") as run:
            store.events.emit("before")
            1 / 0  # noqa: B018
    failed = store.executions.get(run.id)
    assert failed.status == "failed"
    assert failed.error == "ZeroDivisionError: division by zero"
    assert crashed.value.correlation_id == failed.correlation_id
    before, error = store.executions.events(run.id)
    assert before.event_type == "before"
    assert error.severity == "error" and error.error_code == "ZeroDivisionError"
    assert "1 / 0" in error.error_stack and error.correlation_id == failed.correlation_id


def test_keyboard_interrupt_marks_it_cancelled(store):
    with pytest.raises(KeyboardInterrupt):
        with store.executions.track("planner") as run:
            raise KeyboardInterrupt
    cancelled = store.executions.get(run.id)
    assert cancelled.status == "cancelled" and cancelled.error == "KeyboardInterrupt"
    assert [e.severity for e in store.executions.events(run.id)] == []  # a cancel is not an error


def test_an_asyncio_cancellation_marks_it_cancelled(store):
    started = asyncio.Event()

    @store.executions.tracked("waiter")
    async def wait_forever(seconds: float) -> None:
        started.set()
        await asyncio.sleep(seconds)

    async def main() -> None:
        task = asyncio.create_task(wait_forever(3600))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (execution,) = store.executions.list()
    assert execution.agent_type == "waiter"
    assert execution.status == "cancelled" and execution.error == "CancelledError"
    assert execution.input == {"seconds": 3600}


def test_async_with_works_too(store):
    async def main() -> str:
        async with store.executions.track("async-agent") as run:
            run.output = "ok"
        return run.id

    run_id = asyncio.run(main())
    done = store.executions.get(run_id)
    assert done.status == "completed"
    assert done.output == "ok"  # a plain string stays a JSON string, not parsed as JSON text


def test_ending_early_is_kept_when_the_block_ends(store):
    with store.executions.track("planner") as run:
        run.fail("gave up: no tools")
    assert store.executions.get(run.id).status == "failed"
    with store.executions.track("planner") as run:
        run.cancel("user said stop")
    assert store.executions.get(run.id).error == "user said stop"


def test_nested_runs_share_the_operation_and_name_their_parent(store):
    with store.executions.track("planner", correlation_id="req-1") as outer:
        with store.executions.track("coder") as inner:
            store.events.emit("inner step")
        store.events.emit("outer step")
    child = store.executions.get(inner.id)
    assert child.correlation_id == "req-1"
    assert child.metadata["parent_execution_id"] == outer.id
    assert [e.event_type for e in store.executions.events(inner.id)] == ["inner step"]
    assert [e.event_type for e in store.executions.events(outer.id)] == ["outer step"]


def test_bad_usage_is_refused(store):
    with store.executions.track("planner") as run:
        with pytest.raises(ValueError):
            run.usage(input_tokens=-1)
        with pytest.raises(ValueError):
            run.usage(cost=-0.5)
    assert store.executions.get(run.id).status == "completed"


# --- tracked() ----------------------------------------------------------------------


def test_the_decorator_records_arguments_and_result(store):
    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque>"

    @store.executions.tracked("summariser", task_id="t-1")
    def summarise(text: str, *, limit: int = 10, extra: object = None) -> dict:
        return {"summary": text[:limit], "thing": Opaque()}

    assert summarise("hello world", limit=5, extra=Opaque())["summary"] == "hello"
    (execution,) = store.executions.list()
    assert execution.agent_type == "summariser" and execution.task_id == "t-1"
    assert execution.input == {"text": "hello world", "limit": 5, "extra": "<Opaque>"}
    assert execution.output == {"summary": "hello", "thing": "<Opaque>"}


def test_the_bare_decorator_names_the_run_after_the_function(store):
    @store.executions.tracked
    def plan(goal):
        raise RuntimeError(f"cannot plan {goal}")

    with pytest.raises(RuntimeError):
        plan("x")
    (execution,) = store.executions.list()
    assert execution.agent_type.endswith("plan")
    assert execution.status == "failed" and execution.error == "RuntimeError: cannot plan x"


def test_capture_can_be_turned_off(store):
    @store.executions.tracked("secretive", capture_input=False, capture_output=False)
    def handle(password: str) -> str:
        return password[::-1]

    handle("hunter2")
    (execution,) = store.executions.list()
    assert execution.input is None and execution.output is None


# --- a process that dies mid-run ------------------------------------------------------


def test_a_killed_process_leaves_its_run_visibly_running(replica_path):
    script = f"""
        import os, signal, syncstore
        store = syncstore.open({replica_path!r})
        with store.executions.track("planner", input={{"goal": "x"}}) as run:
            print(run.id, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9
    run_id = done.stdout.strip()
    with syncstore.open(replica_path) as store:
        left = store.executions.get(run_id)
        assert left.status == "running" and left.completed_at is None and left.input == {"goal": "x"}
        # It can still be ended by hand (e.g. by an operator who knows it died).
        assert store.executions.fail(run_id, "process killed").status == "failed"
