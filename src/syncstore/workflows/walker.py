"""Walking a definition in order, replaying recorded outputs.

The one place that decides how the state evolves: a step's output goes into
``state[into]``; a condition takes its recorded decision (or decides now); a
parallel node walks each branch on a copy of the state and merges the keys
each branch wrote, in branch order. The live runner and the time-travel
replay both inherit it, so a replay reaches exactly the states the run did.

A subclass says what happens at a node that has no record yet: the runner
calls the step function; a replay stops there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Mapping, NamedTuple

from syncstore.workflows.definition import (
    Condition,
    Node,
    Parallel,
    Plan,
    Step,
    WaitForSignal,
    output_key,
    signal_name,
)


class Recorded(NamedTuple):
    """A node's recorded ``step_end``: what a replay hands back instead of running it."""

    output: Any
    snapshot_id: str
    state: str | None = None  # the stored state changes (JSON), decoded only when a replay compares


class Rejected(Exception):
    """A wait received a rejection and its ``on_reject`` is ``fail``."""

    def __init__(self, node: WaitForSignal, number: int, decision: Mapping[str, Any]):
        self.node = node
        self.number = number
        self.decision = decision
        super().__init__(f"signal {signal_name(node)!r} was rejected at step {node.id!r}")


class Walker(ABC):
    """Walks a plan; ``live_*`` decide what an unrecorded node does."""

    def __init__(
        self,
        plan: Plan,
        recorded: Mapping[int, Recorded],
        *,
        input: Any,  # noqa: A002
        patch_at: int | None = None,
        patch: Mapping[str, Any] | None = None,
    ):
        self.plan = plan
        self.recorded = recorded
        self.input = input
        self.patch_at = patch_at
        self.patch = dict(patch) if patch else None
        self.patched = False

    # --- the walk -------------------------------------------------------------

    def walk(self, nodes: tuple[Node, ...], state: dict[str, Any], lane: Any, written: set[str] | None = None) -> None:
        numbers = self.plan.numbers
        recorded = self.recorded
        for node in nodes:
            number = numbers[node.id]
            if self.patch is not None and not self.patched and self.patch_at is not None and number >= self.patch_at:
                # A fork's changed state takes effect where the fork begins.
                self.patched = True
                state.update(self.patch)
                if written is not None:
                    written.update(self.patch)
            rec = recorded.get(number)
            kind = type(node)
            if kind is Step:
                output = rec.output if rec is not None else self.live_step(node, number, state, lane)
                key = output_key(node)
                state[key] = output
                if written is not None:
                    written.add(key)
                self.passed(node, number, state, rec, output, {key: output})
            elif kind is Condition:
                value = bool(rec.output["value"]) if rec is not None else self.live_condition(node, number, state, lane)
                self.passed(node, number, state, rec, {"value": value}, {})
                self.walk(node.then if value else node.otherwise, state, lane, written)
            elif kind is Parallel:
                self.parallel(node, number, state, lane, rec, written)
            else:
                output = rec.output if rec is not None else self.live_wait(node, number, state, lane)
                key = output_key(node)
                state[key] = output
                if written is not None:
                    written.add(key)
                self.passed(node, number, state, rec, output, {key: output})
                if node.on_reject == "fail" and isinstance(output, dict) and output.get("decision") == "reject":
                    raise Rejected(node, number, output)

    def parallel(
        self,
        node: Parallel,
        number: int,
        state: dict[str, Any],
        lane: Any,
        rec: Recorded | None,
        written: set[str] | None,
    ) -> None:
        """Branches one after another (a replay); the runner overrides this with threads."""
        base = dict(state)
        results = []
        for branch in node.branches:
            branch_state, branch_written = dict(base), set()
            self.walk(branch, branch_state, lane, branch_written)
            results.append((branch_state, branch_written))
        changed = merge(state, results, written)
        self.passed(node, number, state, rec, None, changed)

    # --- what subclasses decide -----------------------------------------------

    @abstractmethod
    def live_step(self, node: Step, number: int, state: dict[str, Any], lane: Any) -> Any:
        """A step with no recorded output: return its output (or stop the walk)."""

    @abstractmethod
    def live_condition(self, node: Condition, number: int, state: dict[str, Any], lane: Any) -> bool:
        """A condition with no recorded decision: decide it."""

    @abstractmethod
    def live_wait(self, node: WaitForSignal, number: int, state: dict[str, Any], lane: Any) -> Any:
        """A wait with no recorded signal: return the decision (or stop the walk)."""

    def passed(
        self, node: Node, number: int, state: dict[str, Any], rec: Recorded | None, output: Any, changed: dict[str, Any]
    ) -> None:
        """Called after each node, recorded or live, with the state keys it set; a replay lists them here."""


def merge(
    state: dict[str, Any], results: list[tuple[dict[str, Any], set[str]]], written: set[str] | None
) -> dict[str, Any]:
    """Fold branch states back: each branch's written keys, later branches
    winning. Returns the keys set, with their values."""
    changed: dict[str, Any] = {}
    for branch_state, branch_written in results:
        for key in sorted(branch_written):
            state[key] = changed[key] = branch_state[key]
        if written is not None:
            written.update(branch_written)
    return changed
