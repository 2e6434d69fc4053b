"""Definitions in the store: registering versions, and finding the one an execution runs.

A version, once registered, means one definition. Registering the same
definition again is a no-op; registering a different one under a taken
version is refused (:class:`WorkflowVersionError`): bump the version.
Executions point at the exact ``workflows`` row they started from and carry
the definition's SHA-256, so a row edited behind the engine's back is caught
instead of silently changing a running execution.

Two replicas that register the same name and version offline with different
definitions end up, after sync, with two rows; each execution still runs the
row it was started from, and new starts use the older row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from syncstore.errors import NotFoundError, WorkflowDefinitionError, WorkflowError, WorkflowVersionError
from syncstore.workflows import definition as defs
from syncstore.workflows import records
from syncstore.workflows.definition import Plan, WorkflowSpec
from syncstore.workflows.records import WorkflowRecord
from syncstore.workflows.registry import Registry

if TYPE_CHECKING:
    from syncstore.replica.store import Replica


class Catalog:
    def __init__(self, store: Replica, registry: Registry):
        self.store = store
        self.registry = registry
        self._plans: dict[str, tuple[str, Plan]] = {}  # workflow row id -> (definition text, plan)
        # Specs this catalog registered, by identity: starting a spec again needs no
        # second registration (a version's definition never changes once stored).
        self._resolved: dict[int, tuple[WorkflowSpec, WorkflowRecord, Plan]] = {}

    def register(self, spec: WorkflowSpec, *, created_by: str | None = None) -> WorkflowRecord:
        """Store ``spec`` as a version of its workflow (idempotent; refuses changes)."""
        built = defs.plan(spec.definition)
        with self.store.transaction():  # BEGIN IMMEDIATE: two processes cannot both insert
            for found in self._rows(spec.name, spec.version):
                if self.plan_of(found).canonical != built.canonical:
                    raise WorkflowVersionError(spec.name, spec.version)
                return records.workflow(found)
            row_id = self.store.insert(
                "workflows",
                {
                    "name": spec.name,
                    "version": spec.version,
                    "definition": built.canonical,
                    "description": spec.description,
                    "tags": list(spec.tags),
                    "config": spec.config,
                    "schedule": spec.schedule,
                    "created_by": created_by,
                },
            )
        return self.get_row(row_id)

    def _rows(self, name: str, version: int | None = None) -> list[dict[str, Any]]:
        sql = "select * from workflows where name = ?"
        params: list[Any] = [name]
        if version is not None:
            sql += " and version = ?"
            params.append(version)
        return self.store.query(sql + " order by version desc, created_at, id", params)

    def get_row(self, workflow_id: str) -> WorkflowRecord:
        found = self.store.get("workflows", workflow_id)
        if found is None:
            raise NotFoundError("workflows", workflow_id)
        return records.workflow(found)

    def find(self, name: str, version: int | None = None) -> WorkflowRecord:
        """A stored version (the newest active one when ``version`` is None)."""
        for found in self._rows(name, version):
            if version is not None or found["is_active"]:
                return records.workflow(found)
        which = f"version {version}" if version is not None else "an active version"
        raise WorkflowError(f"no workflow {name!r} with {which} is registered in this store")

    def list(self, name: str | None = None) -> list[WorkflowRecord]:
        if name is not None:
            return [records.workflow(r) for r in self._rows(name)]
        return [records.workflow(r) for r in self.store.query("select * from workflows order by name, version desc, created_at, id")]

    def resolve(self, workflow: WorkflowSpec | str, version: int | None = None) -> tuple[WorkflowRecord, Plan]:
        """The stored version to start: a spec is registered first; a name first
        registers every version this process declares under it."""
        if isinstance(workflow, WorkflowSpec):
            if version is not None and version != workflow.version:
                raise WorkflowError(f"{workflow.name!r}: the spec is version {workflow.version}, not {version}")
            cached = self._resolved.get(id(workflow))
            if cached is not None and cached[0] is workflow:
                return cached[1], cached[2]
            found = self.register(workflow)
            built = self.plan(found.id)
            self._resolved[id(workflow)] = (workflow, found, built)
            return found, built
        else:
            for spec in self.registry.versions(workflow):
                self.register(spec)
            found = self.find(workflow, version)
        return found, self.plan(found.id)

    def plan_of(self, found: dict[str, Any]) -> Plan:
        text = found["definition"]
        cached = self._plans.get(found["id"])
        if cached is not None and cached[0] == text:
            return cached[1]
        try:
            built = defs.plan(text)
        except WorkflowDefinitionError as exc:
            raise WorkflowDefinitionError(f"workflow {found['name']!r} version {found['version']}: {exc}") from None
        self._plans[found["id"]] = (text, built)
        return built

    def plan(self, workflow_id: str) -> Plan:
        found = self.store.get("workflows", workflow_id)
        if found is None:
            raise NotFoundError("workflows", workflow_id)
        return self.plan_of(found)

    def pinned(self, execution: dict[str, Any], metadata: dict[str, Any]) -> Plan:
        """The plan an execution started on, checked against what it recorded."""
        found = self.store.get("workflows", execution["workflow_id"])
        if found is None:
            raise WorkflowError(f"execution {execution['id']}: its workflow {execution['workflow_id']} is not in this store")
        if found["version"] != execution["workflow_version"]:
            raise WorkflowError(
                f"execution {execution['id']}: started on version {execution['workflow_version']}, "
                f"but its workflow row now says version {found['version']}"
            )
        built = self.plan_of(found)
        expected = metadata.get("definition_sha256")
        if expected is not None and expected != built.sha256:
            raise WorkflowError(
                f"execution {execution['id']}: the definition of {found['name']!r} version {found['version']} "
                f"changed after the execution started; it will not run on a different definition"
            )
        return built
