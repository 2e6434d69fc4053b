"""Running one execution live: step boundaries, retries, waits, parallel branches.

Durability rests on one rule: a step's ``step_end`` snapshot (which carries its
output) is written in a transaction that first checks that this process still
holds the lease. Until that commit the step has not happened, as far as the
workflow is concerned; after it, the step never runs again (a recovery replays
the recorded output instead).

To spend one commit per step, a finished step's record waits in memory until
the next *boundary*: the moment before the next step function runs, before a
wait, or at the end. The boundary transaction writes the record, reads the
control column (``requested_status``) so a pause or cancel takes effect there,
moves ``current_step`` on, and renews the lease when it is half spent. Nothing
with side effects runs between a step and its boundary (only conditions, which
must be pure), so deferring the commit changes nothing a crash could observe.

A transactional step runs inside its boundary transaction instead, so what it
writes to the store commits together with its record: exactly once.
"""

from __future__ import annotations

import threading
import time
import traceback
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import msgspec

from syncstore import schema
from syncstore.errors import LeaseLostError, PermanentStepError
from syncstore.workflows import lease, retry
from syncstore.workflows.context import StepContext
from syncstore.workflows.definition import (
    Condition,
    Parallel,
    Plan,
    Step,
    WaitForSignal,
    output_key,
    signal_name,
    walk,
)
from syncstore.workflows.snapshots import Meter, json_value, row
from syncstore.workflows.walker import Recorded, Rejected, Walker, merge

if TYPE_CHECKING:
    from syncstore.workflows.engine import Engine

STOP_REQUESTS = ("paused", "cancelled")
CONTROL_SQL = "select lease_owner, requested_status from workflow_executions where id = ?"
SIGNALS_SQL = (
    "select id, output, timestamp from execution_snapshots "
    "where execution_id = ? and kind = 'signal' and step_name = ? order by timestamp, id"
)
_STOP_STRENGTH = {"cancelled": 3, "paused": 2, "waiting": 1, "halted": 0}
MAX_ERROR_TEXT = 4_000


class Stop(Exception):
    """The walk stops here: ``paused``, ``cancelled``, ``waiting`` (for a signal),
    or ``halted`` (a sibling parallel branch failed)."""

    def __init__(self, reason: str, *, wait: tuple[WaitForSignal, int] | None = None):
        self.reason = reason
        self.wait = wait
        super().__init__(reason)


class Failure(Exception):
    """The execution fails at node ``number``. ``recorded``: an ``error`` snapshot
    for it is already written (a step's last failed attempt)."""

    def __init__(self, number: int, node_id: str, message: str, *, recorded: bool):
        self.number = number
        self.node_id = node_id
        self.message = message
        self.recorded = recorded
        super().__init__(f"step {node_id!r}: {message}")


class Lane:
    """Records waiting for the next boundary, for one thread of the walk."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: list[dict[str, Any]] = []


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_TEXT]


class Runner(Walker):
    def __init__(
        self,
        engine: Engine,
        execution_id: str,
        plan: Plan,
        recorded: dict[int, Recorded],
        *,
        input: Any,  # noqa: A002
        attempts: dict[int, int],
        starts: dict[int, str],
        consumed: set[str],
        lease_until: float,
        patch_at: int | None = None,
        patch: dict[str, Any] | None = None,
    ):
        super().__init__(plan, recorded, input=input, patch_at=patch_at, patch=patch)
        self.engine = engine
        self.store = engine.store
        self.conn = engine.store.connection
        self.eid = execution_id
        self.owner = engine.owner
        self.lease_seconds = engine.lease_seconds
        self.lease_until = lease_until
        self.attempts = attempts
        self.starts = starts
        self.consumed = consumed
        self.functions = {name: engine.registry.function(name) for name in plan.functions}
        self.predicates = {name: engine.registry.predicates[name] for name in plan.predicates}
        # Set when the claim that started this run has just read the control column
        # and nothing is pending yet: the first boundary would only repeat it.
        self.fresh = False
        self.position = 0  # the node the latest boundary was for
        self.stop_flag = threading.Event()  # a pause/cancel seen by the heartbeat mid-step
        self.halt = threading.Event()  # a parallel branch failed: the others stop at their next boundary
        self._signal_lock = threading.Lock()

    # --- the run --------------------------------------------------------------

    def run(self) -> str:
        """Walk to the end or to a stop; returns the status it left the execution in."""
        state: dict[str, Any] = {}
        main = Lane()
        self.engine.heartbeat.add(self)
        try:
            try:
                self.walk(self.plan.definition.steps, state, main)
            except Stop as stop:
                return self._stopped(stop, state, main)
            except Rejected as rejected:
                return self._failed(Failure(rejected.number, rejected.node.id, str(rejected), recorded=False), state, main)
            except Failure as failure:
                return self._failed(failure, state, main)
            return self._completed(state, main)
        except LeaseLostError:
            raise
        except BaseException:
            # An error of ours or an interrupt: hand the execution back as it is
            # (still running) so that recover() anywhere can pick it up at once.
            self._release_quietly()
            raise
        finally:
            self.engine.heartbeat.remove(self)

    # --- transactions -----------------------------------------------------------

    def _fence(self) -> str | None:
        """Inside a write transaction: refuse to go on unless we hold the lease;
        return the requested status."""
        found = self.conn.execute(CONTROL_SQL, (self.eid,)).fetchone()
        if found is None or found[0] != self.owner:
            raise LeaseLostError(self.eid, None if found is None else found[0])
        return found[1]

    def _write(self, rows: list[dict[str, Any]], number: int | None = None) -> None:
        """Write snapshot rows; renew the lease when half of it is spent. The
        execution row is left alone otherwise: ``current_step`` moves with the
        renewals and at stops (the exact position is in the snapshots), which
        keeps a step to one insert and one commit."""
        if rows:
            self.store.insert_many("execution_snapshots", rows)
        if self.lease_until - time.time() < self.lease_seconds / 2:
            self.lease_until, until = lease.expiry(self.lease_seconds)
            changes: dict[str, Any] = {"lease_expires_at": until}
            if number is not None:
                changes["current_step"] = number
            self.store.update("workflow_executions", self.eid, changes)

    def boundary(self, lane: Lane, number: int) -> None:
        """Commit what is pending before node ``number`` runs; obey a pause or cancel."""
        self.position = number
        if self.halt.is_set():
            raise Stop("halted")
        if self.fresh:
            self.fresh = False
            if not lane.pending:
                return
        with self.store.transaction():
            requested = self._fence()
            self._write(lane.pending, number)
        lane.pending = []
        if requested in STOP_REQUESTS:
            raise Stop(requested)

    def flush(self, lane: Lane) -> None:
        if lane.pending:
            with self.store.transaction():
                self._fence()
                self._write(lane.pending)
            lane.pending = []

    def _finish(self, lane: Lane, changes: dict[str, Any], extra: list[dict[str, Any]]) -> str:
        changes.update(lease_owner=None, lease_expires_at=None)
        with self.store.transaction():
            self._fence()
            rows = [*lane.pending, *extra]
            if rows:
                self.store.insert_many("execution_snapshots", rows)
            self.store.update("workflow_executions", self.eid, changes)
        lane.pending = []
        return changes["status"]

    def _release_quietly(self) -> None:
        try:
            with self.store.transaction():
                self._fence()
                self.store.update(
                    "workflow_executions",
                    self.eid,
                    {"lease_owner": None, "lease_expires_at": None, "current_step": max(self.position, 1)},
                )
        except Exception:  # the original error matters more; the lease expires anyway
            pass

    # --- how a run ends -----------------------------------------------------------

    def _completed(self, state: dict[str, Any], lane: Lane) -> str:
        key = self.plan.definition.output
        output = state.get(key) if key is not None else state
        now = schema.now_iso()
        changes = {
            "status": "completed",
            "output": json_value(output),
            "state": state,
            "current_step": self.plan.total,
            "completed_at": now,
            "error": None,
        }
        return self._finish(lane, changes, [])

    def _failed(self, failure: Failure, state: dict[str, Any], lane: Lane) -> str:
        extra = []
        if not failure.recorded:
            extra.append(
                row(
                    self.eid,
                    failure.number,
                    "error",
                    step_name=failure.node_id,
                    state=dict(state),
                    metadata={"error": failure.message},
                )
            )
        changes = {
            "status": "failed",
            "error": str(failure)[:MAX_ERROR_TEXT],
            "state": state,
            "current_step": failure.number,
            "completed_at": schema.now_iso(),
        }
        return self._finish(lane, changes, extra)

    def _stopped(self, stop: Stop, state: dict[str, Any], lane: Lane) -> str:
        now = schema.now_iso()
        if stop.reason == "waiting" and stop.wait is not None:
            return self._waiting(stop.wait, state, lane, now)
        status = "cancelled" if stop.reason == "cancelled" else "paused"
        changes: dict[str, Any] = {"status": status, "state": state, "current_step": self.position}
        changes["completed_at" if status == "cancelled" else "paused_at"] = now
        checkpoint = row(self.eid, 0, "checkpoint", state=dict(state), timestamp=now, metadata={"event": status})
        return self._finish(lane, changes, [checkpoint])

    def _waiting(self, wait: tuple[WaitForSignal, int], state: dict[str, Any], lane: Lane, now: str) -> str:
        node, number = wait
        name = signal_name(node)
        extra = []
        since = self.starts.get(number)
        if since is None:
            since = now
            extra.append(row(self.eid, number, "step_start", step_name=node.id, state=dict(state), timestamp=now, metadata={"signal": name}))
        found = self.store.get("workflow_executions", self.eid)
        metadata = msgspec.json.decode(found["metadata"]) if found and found["metadata"] else {}
        seen = self.conn.execute(
            "select count(*) from execution_snapshots where execution_id = ? and kind = 'signal' and step_name = ?",
            (self.eid, name),
        ).fetchone()[0]
        waiting: dict[str, Any] = {"signal": name, "step": number, "since": since, "seen": seen}
        if node.timeout_seconds is not None:
            waiting["deadline"] = lease.stamp(schema.parse_timestamp(since).timestamp() + node.timeout_seconds)
        metadata["waiting_for"] = waiting
        changes = {"status": "waiting", "state": state, "current_step": number, "metadata": metadata}
        return self._finish(lane, changes, extra)

    # --- nodes ----------------------------------------------------------------------

    def _context(self, node: Step, number: int, state: dict[str, Any], attempt: int) -> StepContext:
        return StepContext(
            store=self.store,  # type: ignore[arg-type]
            execution_id=self.eid,
            step_id=node.id,
            step_number=number,
            attempt=attempt,
            input=self.input,
            state=state,
            params=node.params,
            stop=self.stop_flag,
        )

    def _end_row(self, node: Step, number: int, state: dict[str, Any], value: Any, ctx: StepContext, meter: Meter) -> dict[str, Any]:
        return row(
            self.eid,
            number,
            "step_end",
            step_name=node.id,
            state={output_key(node): value},
            variables=ctx.variables or None,
            output=value,
            meter=meter,
            metadata={"attempt": ctx.attempt} if ctx.attempt > 1 else None,
        )

    def _error_row(self, node: Step, number: int, state: dict[str, Any], ctx: StepContext, error: BaseException, meter: Meter) -> dict[str, Any]:
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__, limit=8))
        return row(
            self.eid,
            number,
            "error",
            step_name=node.id,
            variables=ctx.variables or None,
            meter=meter,
            metadata={"attempt": ctx.attempt, "error": describe(error), "traceback": trace[-MAX_ERROR_TEXT:]},
        )

    def live_step(self, node: Step, number: int, state: dict[str, Any], lane: Lane) -> Any:
        fn = self.functions[node.function or node.id]
        rule = retry.policy(node, fn)
        attempt = self.attempts.get(number, 0)
        if attempt >= rule.max_attempts:
            # The last attempt failed and was recorded, then the process died
            # before it could record the execution's failure.
            raise Failure(number, node.id, f"failed after {attempt} attempts", recorded=True)
        if rule.transactional:
            return self._transactional_step(node, number, state, lane, fn.fn, rule, attempt)
        self.boundary(lane, number)
        while True:
            attempt += 1
            ctx = self._context(node, number, state, attempt)
            outcome = retry.invoke(fn.fn, ctx, rule.timeout_seconds)
            if outcome.ok:
                lane.pending.append(self._end_row(node, number, state, outcome.value, ctx, outcome.meter))
                return outcome.value
            with self.store.transaction():
                requested = self._fence()
                self._write([self._error_row(node, number, state, ctx, outcome.value, outcome.meter)], number)
            if attempt >= rule.max_attempts or isinstance(outcome.value, PermanentStepError):
                raise Failure(number, node.id, describe(outcome.value), recorded=True)
            if requested in STOP_REQUESTS:
                raise Stop(requested)
            self._backoff(retry.delay(rule, attempt))

    def _transactional_step(self, node: Step, number: int, state: dict[str, Any], lane: Lane, fn: Any, rule: retry.Policy, attempt: int) -> Any:
        # The previous step's record commits first: if this function's transaction
        # rolls back (an error, a kill), it must not take that record with it.
        self.boundary(lane, number)
        while True:
            attempt += 1
            ctx = self._context(node, number, state, attempt)
            error: BaseException | None = None
            value: Any = None
            with self.store.transaction():
                requested = self._fence()  # read again: a retry comes after a backoff
                if requested not in STOP_REQUESTS:
                    meter = Meter()
                    try:
                        # A savepoint: the function's own writes and its record stand or fall together.
                        with self.store.transaction():
                            value = retry.normalise(fn(ctx))
                            meter.stop()
                            self._write([self._end_row(node, number, state, value, ctx, meter)], number)
                    except Exception as exc:
                        error = exc
                        meter.stop()
                        self._write([self._error_row(node, number, state, ctx, exc, meter)], number)
            if requested in STOP_REQUESTS:
                raise Stop(requested)
            if error is None:
                return value
            if attempt >= rule.max_attempts or isinstance(error, PermanentStepError):
                raise Failure(number, node.id, describe(error), recorded=True)
            self._backoff(retry.delay(rule, attempt))

    def _backoff(self, seconds: float) -> None:
        """Wait before the next attempt, watching for a pause or cancel meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            if self.halt.wait(min(left, 0.25)):
                raise Stop("halted")
            found = self.conn.execute(CONTROL_SQL, (self.eid,)).fetchone()
            if found is not None and found[1] in STOP_REQUESTS:
                raise Stop(found[1])

    def live_condition(self, node: Condition, number: int, state: dict[str, Any], lane: Lane) -> bool:
        try:
            if node.when is not None:
                value = self.plan.condition(node).truth(state=state, input=self.input)
            else:
                value = bool(self.predicates[node.predicate or ""](MappingProxyType(state), self.input))
        except Exception as exc:
            raise Failure(number, node.id, f"the condition failed: {describe(exc)}", recorded=False) from None
        decision = {"value": value, "branch": "then" if value else "else"}
        lane.pending.append(row(self.eid, number, "step_end", step_name=node.id, output=decision))
        return value

    def live_wait(self, node: WaitForSignal, number: int, state: dict[str, Any], lane: Lane) -> Any:
        self.boundary(lane, number)
        name = signal_name(node)
        with self._signal_lock:
            found = None
            for signal_id, output, timestamp in self.conn.execute(SIGNALS_SQL, (self.eid, name)):
                if signal_id not in self.consumed:
                    found = (signal_id, msgspec.json.decode(output) if output else {}, timestamp)
                    self.consumed.add(signal_id)
                    break
        if found is not None:
            signal_id, sent, timestamp = found
            decision = sent.get("decision", "approve")
            value = {
                "decision": decision,
                "approved": decision == "approve",
                "data": sent.get("data"),
                "signal_id": signal_id,
                "sent_at": timestamp,
            }
            lane.pending.append(row(self.eid, number, "step_end", step_name=node.id, state={output_key(node): value}, output=value))
            return value
        since = self.starts.get(number)
        if node.timeout_seconds is not None and since is not None:
            if time.time() > schema.parse_timestamp(since).timestamp() + node.timeout_seconds:
                raise Failure(number, node.id, f"no {name!r} signal within {node.timeout_seconds:g} s", recorded=False)
        raise Stop("waiting", wait=(node, number))

    def parallel(self, node: Parallel, number: int, state: dict[str, Any], lane: Lane, rec: Recorded | None, written: set[str] | None) -> None:
        inner = [self.plan.numbers[n.id] for branch in node.branches for n, _ in walk(branch)]
        if all(n in self.recorded for n in inner):
            super().parallel(node, number, state, lane, rec, written)
            return
        self.boundary(lane, number)
        meter = Meter()
        base = dict(state)
        outcomes: list[tuple[BaseException | None, dict[str, Any], set[str]]] = [(None, {}, set())] * len(node.branches)

        def run_branch(index: int) -> None:
            sub, branch_state, branch_written = Lane(), dict(base), set()
            error: BaseException | None = None
            try:
                self.walk(node.branches[index], branch_state, sub, branch_written)
            except BaseException as exc:  # collected, then judged once every branch has stopped
                error = exc
                if not isinstance(exc, Stop):
                    self.halt.set()
            try:
                self.flush(sub)  # the branch's last finished step
            except BaseException as exc:
                error = error or exc
            outcomes[index] = (error, branch_state, branch_written)

        threads = [
            threading.Thread(target=run_branch, args=(i,), name=f"syncstore-branch-{node.id}-{i}", daemon=True)
            for i in range(len(node.branches))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        errors = [error for error, _, _ in outcomes if error is not None]
        if errors:
            raise _worst(errors)
        changed = merge(state, [(s, w) for _, s, w in outcomes], written)
        lane.pending.append(
            row(
                self.eid,
                number,
                "step_end",
                step_name=node.id,
                state=changed,
                meter=meter.stop(),
                metadata={"branches": len(node.branches)},
            )
        )


def _worst(errors: list[BaseException]) -> BaseException:
    """Of the branches' errors, the one that decides what happens to the execution."""
    for kinds in ((LeaseLostError,), (Failure, Rejected)):
        for error in errors:
            if isinstance(error, kinds):
                return error
    for error in errors:
        if not isinstance(error, Stop):
            return error  # an unexpected error: re-raised as it is
    return max(errors, key=lambda e: _STOP_STRENGTH[e.reason])  # type: ignore[attr-defined]
