"""``store.workflows``: definitions, executions, control and time travel in one place."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from syncstore.workflows import control, htmlreport, timeline, timetravel
from syncstore.workflows import definition as defs
from syncstore.workflows import records as recs
from syncstore.workflows.definition import WorkflowSpec
from syncstore.workflows.engine import Engine
from syncstore.workflows.lease import new_owner
from syncstore.workflows.records import ExecutionRecord, SnapshotRecord, WorkflowRecord
from syncstore.workflows.registry import Registry
from syncstore.workflows.registry import default as default_registry
from syncstore.workflows.snapshots import Snapshots

if TYPE_CHECKING:
    from syncstore.replica.store import Replica

DEFAULT_LEASE_SECONDS = 30.0


class Workflows:
    """Durable workflows over one store.

    ``registry``: where step functions are found (the module-level one that
    ``@step`` fills, by default). ``lease_seconds``: how long a crashed owner
    on another machine blocks an execution (an owner on this machine that died
    blocks nothing). ``owner``: this engine's lease owner id (host, PID namespace, pid,
    process start and a random part, by default).
    """

    def __init__(
        self,
        store: Replica,
        *,
        registry: Registry | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        owner: str | None = None,
    ):
        self.store = store
        self.registry = registry if registry is not None else default_registry
        self.engine = Engine(store, registry=self.registry, lease_seconds=lease_seconds, owner=owner or new_owner())
        self.snapshots = Snapshots(store)

    # --- definitions ------------------------------------------------------------

    def register(self, spec: WorkflowSpec, *, created_by: str | None = None) -> WorkflowRecord:
        """Store a version of a workflow; the same definition again is a no-op,
        a different one under a taken version raises WorkflowVersionError."""
        return self.engine.catalog.register(spec, created_by=created_by)

    def define(
        self,
        name: str,
        definition: str | bytes | Mapping[str, Any] | list[Any],
        *,
        version: int = 1,
        description: str = "",
        tags: Iterable[str] = (),
        config: dict[str, Any] | None = None,
        schedule: str | None = None,
        created_by: str | None = None,
    ) -> WorkflowRecord:
        """Register a workflow from its JSON definition (text or decoded)."""
        spec = WorkflowSpec(
            name=name,
            version=version,
            definition=defs.plan(definition).definition,
            description=description,
            tags=tuple(tags),
            config=dict(config or {}),
            schedule=schedule,
        )
        return self.register(spec, created_by=created_by)

    def definitions(self, name: str | None = None) -> list[WorkflowRecord]:
        return self.engine.catalog.list(name)

    def definition(self, name: str, version: int | None = None) -> WorkflowRecord:
        return self.engine.catalog.find(name, version)

    # --- executions ---------------------------------------------------------------

    def start(
        self,
        workflow: WorkflowSpec | str,
        *,
        version: int | None = None,
        input: Any = None,  # noqa: A002
        triggered_by: str | None = None,
        parent_execution_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ExecutionRecord:
        """Create a pending execution; ``run(id)`` or ``recover()`` runs it."""
        execution_id, _, _ = self.engine.start(
            workflow,
            version=version,
            input=input,
            triggered_by=triggered_by,
            parent_execution_id=parent_execution_id,
            metadata=metadata,
        )
        return self.get(execution_id)

    def execute(
        self,
        workflow: WorkflowSpec | str,
        *,
        version: int | None = None,
        input: Any = None,  # noqa: A002
        triggered_by: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> ExecutionRecord:
        """Start and run now, in this thread, until it completes, fails, pauses or waits."""
        return self.engine.execute(workflow, version=version, input=input, triggered_by=triggered_by, metadata=metadata)

    def run(self, execution_id: str) -> ExecutionRecord:
        """Run or resume one execution until it stops."""
        return self.engine.run(execution_id)

    def recover(self) -> list[ExecutionRecord]:
        """Run everything that should be running and that no live process holds."""
        return self.engine.recover()

    def get(self, execution_id: str) -> ExecutionRecord:
        return self.engine.get(execution_id)

    def list(
        self,
        *,
        status: str | list[str] | None = None,
        workflow: str | None = None,
        limit: int | None = 50,
        offset: int = 0,
    ) -> list[ExecutionRecord]:
        """Executions, newest first, optionally of one workflow name and status."""
        where: dict[str, Any] = {}
        if status is not None:
            where["status"] = status
        if workflow is not None:
            ids = [w.id for w in self.definitions(workflow)]
            if not ids:
                return []
            where["workflow_id"] = ids
        rows = self.store.rows(
            "workflow_executions", where=where, order_by="created_at", descending=True, limit=limit, offset=offset
        )
        return [recs.execution(r) for r in rows]

    # --- control ------------------------------------------------------------------

    def pause(self, execution_id: str) -> ExecutionRecord:
        return control.pause(self.store, execution_id)

    def resume(self, execution_id: str) -> ExecutionRecord:
        return control.resume(self.store, execution_id)

    def cancel(self, execution_id: str) -> ExecutionRecord:
        return control.cancel(self.store, execution_id)

    def signal(
        self, execution_id: str, name: str, *, decision: str = "approve", data: Any = None, sent_by: str | None = None
    ) -> SnapshotRecord:
        return control.signal(self.store, execution_id, name, decision=decision, data=data, sent_by=sent_by)

    # --- time travel ------------------------------------------------------------------

    def replay(self, execution_id: str) -> timetravel.Replay:
        return timetravel.replay(self.engine, execution_id)

    def state_at(self, execution_id: str, step_number: int) -> dict[str, Any]:
        return timetravel.state_at(self.engine, execution_id, step_number)

    def fork(
        self,
        execution_id: str,
        *,
        from_step: int,
        input: Any = timetravel._UNSET,  # noqa: A002
        state: Mapping[str, Any] | None = None,
    ) -> ExecutionRecord:
        """A new pending execution that reuses steps before ``from_step``; run it with ``run(id)``."""
        return self.get(timetravel.fork(self.engine, execution_id, from_step=from_step, input=input, state=state))

    def diff(self, a: str, b: str) -> timetravel.ExecutionDiff:
        return timetravel.diff(self.engine, a, b)

    def timeline(self, execution_id: str) -> timeline.Timeline:
        return timeline.build(self.engine, execution_id)

    def write_html(self, execution_id: str, path: str | os.PathLike[str]) -> str:
        """Write the execution's timeline as one self-contained HTML file; returns the path."""
        text = htmlreport.render(self.timeline(execution_id))
        target = os.fspath(path)
        with open(target, "w", encoding="utf-8") as f:
            f.write(text)
        return target
