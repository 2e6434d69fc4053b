"""Deciding, for each mapped item, what the import does with the replica.

A row that is not here is inserted. A row that is here is compared on the
columns the export provides (for ``metadata``/``config``, only their
``"legacy"`` key, so local additions there are not compared):

- all equal: unchanged, nothing is written (this is what makes a second
  import of the same file a no-op);
- different, and every one of those columns was last written before the
  export's ``updatedAt``: updated with the export's values at its stamp;
- different, and some column was written here later: kept as it is (the
  replica's copy is newer; the report names the columns that differ).

A row deleted here stays deleted, unless the deletion was a rollback of an
earlier import: then it is inserted again with a fresh clock, so the new
insert wins over that tombstone everywhere.

Messages are append-only: a message whose id is missing is inserted (also
under a task that was kept); one that is here is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import msgspec

from syncstore import schema
from syncstore.legacy import history, secrets
from syncstore.legacy.mapping import ENVIRONMENT_COLUMNS, TASK_COLUMNS, MappedEnvironment, MappedTask
from syncstore.legacy.report import Kept
from syncstore.replica import clocks
from syncstore.replica.store import Replica

# Columns an import writes, besides id: the export's fields, plus the column
# whose "legacy" key holds the rest.
TASK_COMPARED = ("status", *TASK_COLUMNS.values())
ENVIRONMENT_COMPARED = tuple(ENVIRONMENT_COLUMNS.values())
LEGACY_HOLDER = {"tasks": "metadata", "environments": "config"}


@dataclass
class Update:
    table: str
    id: str
    changes: dict[str, Any]  # canonical values to write
    previous: dict[str, Any]  # the values they replace, for a rollback
    stamp: int


@dataclass
class Plan:
    new_tasks: list[MappedTask] = field(default_factory=list)
    revived_tasks: list[MappedTask] = field(default_factory=list)  # removed by a rollback: back again
    new_messages: list[tuple[dict[str, Any], int]] = field(default_factory=list)  # under tasks already here
    new_environments: list[MappedEnvironment] = field(default_factory=list)
    revived_environments: list[MappedEnvironment] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    unchanged: dict[str, int] = field(default_factory=lambda: {"tasks": 0, "environments": 0})
    kept: list[Kept] = field(default_factory=list)
    deleted_here: set[str] = field(default_factory=set)  # ids of rows deleted here, left deleted
    messages_present: int = 0
    messages_new: int = 0
    present_ids: set[str] = field(default_factory=set)  # message ids already here
    secrets: list[tuple[str, str, str]] = field(default_factory=list)  # (env id, token, "stored"/"replaced")
    secrets_unchanged: int = 0

    @property
    def writes(self) -> bool:
        return bool(
            self.new_tasks
            or self.revived_tasks
            or self.new_messages
            or self.new_environments
            or self.revived_environments
            or self.updates
            or self.secrets
        )


def _ids_json(ids: Iterable[str]) -> str:
    return msgspec.json.encode(list(ids)).decode()


def _existing(store: Replica, table: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = store.query(f"select * from {table} where id in (select value from json_each(?))", (_ids_json(ids),))
    return {row["id"]: row for row in rows}


def _tombstones(store: Replica, table: str, ids: list[str]) -> dict[str, int]:
    found = store.connection.execute(
        "select pk, hlc from _ss_tombstones where tbl = ? and pk in (select value from json_each(?))",
        (table, _ids_json(ids)),
    )
    return dict(found)


def _decoded(value: str | None) -> dict[str, Any]:
    """A JSON object column as a dict; anything else (written here by hand) as {}."""
    decoded = msgspec.json.decode(value) if value else {}
    return decoded if isinstance(decoded, dict) else {}


def _legacy_part(value: str | None) -> Any:
    return _decoded(value).get("legacy")


def _compare(table: str, stored: dict[str, Any], new: dict[str, Any], stamp: int) -> tuple[str, Any]:
    """("unchanged", None), ("update", Update) or ("kept", reason)."""
    compared = TASK_COMPARED if table == "tasks" else ENVIRONMENT_COMPARED
    holder = LEGACY_HOLDER[table]
    differing = [name for name in compared if stored[name] != new[name]]
    stored_legacy = _legacy_part(stored[holder])
    if stored_legacy != _legacy_part(new[holder]):
        differing.append(holder)
    if not differing:
        return "unchanged", None
    names = (*compared, holder)
    known = clocks.column_clocks(names, (stored["_hlc"], stored["_site"]), stored["_clocks"])
    newer = [name for name in names if known[name][0] >= stamp]
    if newer:
        return "kept", f"changed here after the export's updatedAt (differs in: {', '.join(differing)})"
    changes = {name: new[name] for name in differing}
    changes["updated_at"] = new["updated_at"]  # so the store does not stamp it with now
    if holder in changes:
        merged = _decoded(stored[holder])
        merged["legacy"] = _legacy_part(new[holder])
        changes[holder] = schema.encode_json(merged)
    previous = {name: stored[name] for name in changes}
    return "update", Update(table, stored["id"], changes, previous, stamp)


def make_plan(store: Replica, tasks: list[MappedTask], environments: list[MappedEnvironment], *, drop_secrets: bool) -> Plan:
    plan = Plan()
    _plan_environments(store, environments, plan, drop_secrets=drop_secrets)
    _plan_tasks(store, tasks, plan)
    return plan


def _plan_environments(store: Replica, items: list[MappedEnvironment], plan: Plan, *, drop_secrets: bool) -> None:
    ids = [env.row["id"] for env in items]
    existing = _existing(store, "environments", ids)
    tombs = _tombstones(store, "environments", ids)
    for env in items:
        env_id = env.row["id"]
        stored = existing.get(env_id)
        if stored is None:
            tomb = tombs.get(env_id)
            if tomb is None:
                plan.new_environments.append(env)
            elif history.undone_by_rollback(store, "environments", env_id, tomb):
                plan.revived_environments.append(env)
            else:
                plan.deleted_here.add(env_id)
                plan.kept.append(Kept(table="environments", id=env_id, reason="deleted here; left deleted"))
                continue
        else:
            _record(plan, "environments", _compare("environments", stored, env.row, env.stamp), env_id)
        if env.token and not drop_secrets:
            current = secrets.get(store, "environments", env_id, secrets.GITHUB_TOKEN)
            if current == env.token:
                plan.secrets_unchanged += 1
            else:
                plan.secrets.append((env_id, env.token, "stored" if current is None else "replaced"))


def _plan_tasks(store: Replica, items: list[MappedTask], plan: Plan) -> None:
    ids = [task.row["id"] for task in items]
    existing = _existing(store, "tasks", ids)
    tombs = _tombstones(store, "tasks", ids)
    plan.present_ids = {
        row[0]
        for row in store.connection.execute(
            "select id from task_messages where task_id in (select value from json_each(?))", (_ids_json(ids),)
        )
    }
    present = plan.present_ids
    for task in items:
        task_id = task.row["id"]
        stored = existing.get(task_id)
        if stored is None:
            tomb = tombs.get(task_id)
            if tomb is not None and not history.undone_by_rollback(store, "tasks", task_id, tomb):
                plan.deleted_here.add(task_id)
                plan.kept.append(Kept(table="tasks", id=task_id, reason="deleted here; left deleted"))
                continue
            # Inserted with its messages, less any already here (a rollback leaves them).
            (plan.new_tasks if tomb is None else plan.revived_tasks).append(task)
            here = sum(1 for m in task.messages if m["id"] in present) if present else 0
            plan.messages_present += here
            plan.messages_new += len(task.messages) - here
            continue
        _record(plan, "tasks", _compare("tasks", stored, task.row, task.stamp), task_id)
        for message in task.messages:
            if message["id"] in present:
                plan.messages_present += 1
            else:
                plan.new_messages.append((message, task.stamp))
                plan.messages_new += 1


def _record(plan: Plan, table: str, outcome: tuple[str, Any], row_id: str) -> None:
    kind, detail = outcome
    if kind == "unchanged":
        plan.unchanged[table] += 1
    elif kind == "update":
        plan.updates.append(detail)
    else:
        plan.kept.append(Kept(table=table, id=row_id, reason=detail))
