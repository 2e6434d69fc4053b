"""What a step function receives: its inputs, the state so far, and a few tools."""

from __future__ import annotations

import threading
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from syncstore.store import Store


class StepContext:
    """The one argument of a step function.

    ``state`` is a read-only view of the workflow state before this step (do
    not mutate what is inside it: return the new value instead). ``variables``
    is a dict the step may fill with anything worth seeing when debugging; it
    is saved in the step's snapshot. ``idempotency_key`` is the same on every
    attempt and after every crash, so an external service can drop repeats.
    """

    __slots__ = (
        "store",
        "execution_id",
        "step_id",
        "step_number",
        "attempt",
        "input",
        "state",
        "params",
        "variables",
        "_stop",
        "_timed_out",
    )

    def __init__(
        self,
        *,
        store: Store,
        execution_id: str,
        step_id: str,
        step_number: int,
        attempt: int,
        input: Any,  # noqa: A002 - the workflow's input
        state: Mapping[str, Any],
        params: Mapping[str, Any],
        stop: threading.Event,
    ):
        self.store = store
        self.execution_id = execution_id
        self.step_id = step_id
        self.step_number = step_number
        self.attempt = attempt
        self.input = input
        self.state = MappingProxyType(state) if isinstance(state, dict) else state
        self.params = params
        self.variables: dict[str, Any] = {}
        self._stop = stop
        self._timed_out: threading.Event | None = None  # made only for a step with a timeout

    @property
    def idempotency_key(self) -> str:
        return f"{self.execution_id}:{self.step_number}"

    @property
    def stop_requested(self) -> bool:
        """True once this attempt timed out, or a pause or cancel arrived while it
        runs: a long step can check it and return early."""
        return (self._timed_out is not None and self._timed_out.is_set()) or self._stop.is_set()

    def snapshot(self, label: str | None = None, **variables: Any) -> None:
        """Write a ``manual`` snapshot now, in the middle of the step.

        It is a debugging aid, written at once in its own transaction: if the
        step runs again after a crash, it writes its manual snapshots again.
        """
        from syncstore.workflows.snapshots import Snapshots

        Snapshots(self.store).take(
            self.execution_id,
            kind="manual",
            step_number=self.step_number,
            step_name=self.step_id,
            state=dict(self.state),
            variables={**self.variables, **variables},
            metadata={"label": label, "attempt": self.attempt} if label else {"attempt": self.attempt},
        )
