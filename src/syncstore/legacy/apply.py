"""Writing a plan into the replica, inside the caller's transaction.

New rows go in by batches (:mod:`.bulk`), each row stamped with its item's
``updatedAt``; rows brought back after a rollback, and updates of existing
rows, go through the replica's own ``insert``/``update``. Every row written is
recorded in the import history, so a rollback can remove exactly those.
"""

from __future__ import annotations

from typing import Any, Callable

from syncstore import schema
from syncstore.legacy import bulk, history, secrets
from syncstore.legacy.plan import Plan
from syncstore.replica.store import Replica

Progress = Callable[[int, int], None]
BATCH_TASKS = 500  # tasks per batch: a progress step, and a bound on memory per statement


def apply(store: Replica, plan: Plan, *, import_id: str, progress: Progress | None, total: int) -> None:
    done = 0
    records: list[tuple[str, str, str, int, Any]] = []
    present = plan.present_ids

    def step(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    if progress is not None:
        progress(0, total)

    envs = plan.new_environments
    bulk.insert_rows(store, "environments", [e.row for e in envs], [e.stamp for e in envs])
    records.extend(("environments", e.row["id"], "insert", e.stamp, None) for e in envs)
    for env in plan.revived_environments:
        stamp = store.clock.tick()  # newer than the rollback's tombstone
        store.insert("environments", env.row, hlc=stamp)
        records.append(("environments", env.row["id"], "insert", stamp, None))
    step(len(envs) + len(plan.revived_environments))

    for env_id, token, outcome in plan.secrets:
        secrets.put(store, "environments", env_id, secrets.GITHUB_TOKEN, token)
        records.append(("local_secrets", env_id, "secret", 0, "replaced" if outcome == "replaced" else None))

    for update in plan.updates:
        store.update(update.table, update.id, update.changes, hlc=update.stamp)
        records.append((update.table, update.id, "update", update.stamp, schema.encode_json(update.previous)))
    step(sum(1 for u in plan.updates if u.table == "environments"))

    tasks = plan.new_tasks
    for start in range(0, len(tasks), BATCH_TASKS):
        batch = tasks[start : start + BATCH_TASKS]
        bulk.insert_rows(store, "tasks", [t.row for t in batch], [t.stamp for t in batch])
        messages, stamps, added = [], [], []
        for task in batch:
            # Only a rollback leaves messages here, so usually all are new.
            new = [m for m in task.messages if m["id"] not in present] if present else task.messages
            if new:
                messages.extend(new)
                stamps.extend([task.stamp] * len(new))
                added.append(_messages_record(task.row["id"], task.stamp, [m["position"] for m in new]))
        bulk.insert_rows(store, "task_messages", messages, stamps)
        records.extend(("tasks", t.row["id"], "insert", t.stamp, None) for t in batch)
        records.extend(added)
        step(len(batch))

    for task in plan.revived_tasks:
        stamp = store.clock.tick()
        store.insert("tasks", task.row, hlc=stamp)
        missing = [m for m in task.messages if m["id"] not in present]
        bulk.insert_rows(store, "task_messages", missing, [stamp] * len(missing))
        records.append(("tasks", task.row["id"], "insert", stamp, None))
        _record_messages(records, missing, [stamp] * len(missing))
    step(len(plan.revived_tasks))

    if plan.new_messages:
        bulk.insert_rows(store, "task_messages", [m for m, _ in plan.new_messages], [s for _, s in plan.new_messages])
        _record_messages(records, [m for m, _ in plan.new_messages], [s for _, s in plan.new_messages])
    step(total - done)

    history.record_rows(store, import_id, records)
    # Later local writes must sort after every imported stamp, even one that
    # equals this millisecond.
    newest = max((r[3] for r in records), default=0)
    store.clock.observe(newest)


def _record_messages(records: list[tuple[str, str, str, int, Any]], messages: list[dict[str, Any]], stamps: list[int]) -> None:
    """One history record per task for the messages added under it (a row
    per message would double the import's writes)."""
    by_task: dict[str, tuple[int, list[int]]] = {}
    for message, stamp in zip(messages, stamps):
        by_task.setdefault(message["task_id"], (stamp, []))[1].append(message["position"])
    for task_id, (stamp, positions) in by_task.items():
        records.append(_messages_record(task_id, stamp, positions))


def _messages_record(task_id: str, stamp: int, positions: list[int]) -> tuple[str, str, str, int, Any]:
    """The history record of the messages added under one task."""
    ranges = history.position_ranges(sorted(positions))
    return ("task_messages", task_id, "insert", stamp, schema.encode_json(ranges))
