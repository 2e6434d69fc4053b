"""After writing, checking the replica against the source it came from.

Run inside the import's transaction, before commit: any problem aborts the
import with nothing written. It checks that every imported task and
environment is present, that each task holds exactly its source messages at
their positions (by id, so messages added here later do not count), and that
each token went to the local secret table (unless dropped).
"""

from __future__ import annotations

import msgspec

from syncstore.legacy import secrets
from syncstore.legacy.mapping import MappedEnvironment, MappedTask, message_id_prefix
from syncstore.legacy.report import IntegrityCheck
from syncstore.replica.store import Replica

MAX_PROBLEMS = 20  # listed one by one; more are counted


def _present(store: Replica, table: str, ids: list[str]) -> int:
    return store.connection.execute(
        f"select count(*) from {table} where id in (select value from json_each(?))",
        (msgspec.json.encode(ids).decode(),),
    ).fetchone()[0]


def check(
    store: Replica,
    tasks: list[MappedTask],
    environments: list[MappedEnvironment],
    *,
    deleted_here: set[str],
    drop_secrets: bool,
) -> IntegrityCheck:
    problems: list[str] = []
    checked: list[str] = []
    task_ids = [t.row["id"] for t in tasks if t.row["id"] not in deleted_here]
    env_ids = [e.row["id"] for e in environments if e.row["id"] not in deleted_here]

    have = _present(store, "tasks", task_ids)
    checked.append(f"tasks: {have} of {len(task_ids)} present")
    if have != len(task_ids):
        problems.append(f"tasks: {len(task_ids) - have} missing")
    have = _present(store, "environments", env_ids)
    checked.append(f"environments: {have} of {len(env_ids)} present")
    if have != len(env_ids):
        problems.append(f"environments: {len(env_ids) - have} missing")

    expected = [
        (t.row["id"], len(t.messages), message_id_prefix(t.row["id"])) for t in tasks if t.row["id"] not in deleted_here
    ]
    # For each task: its rows whose id is the one derived from their position.
    mismatched = store.connection.execute(
        """
        select task_id, n, (
            select count(*) from task_messages m
            where m.task_id = e.task_id and m.position < e.n and m.id = e.prefix || printf('%06x', m.position)
        ) as have
        from (
            select json_extract(value, '$[0]') as task_id, json_extract(value, '$[1]') as n,
                   json_extract(value, '$[2]') as prefix
            from json_each(?)
        ) as e
        where have != n
        """,
        (msgspec.json.encode(expected).decode(),),
    ).fetchall()
    total = sum(n for _, n, _ in expected)
    missing = sum(n - have for _, n, have in mismatched)
    checked.append(f"messages: {total - missing} of {total} present, in order, across {len(expected)} tasks")
    for task_id, n, have in mismatched[:MAX_PROBLEMS]:
        problems.append(f"task {task_id}: {have} of {n} messages present")
    if len(mismatched) > MAX_PROBLEMS:
        problems.append(f"... and {len(mismatched) - MAX_PROBLEMS} more tasks with missing messages")

    with_token = [e for e in environments if e.token and e.row["id"] not in deleted_here]
    if drop_secrets:
        checked.append(f"secrets: {len(with_token)} dropped, none stored")
    else:
        # Compared here, never shown: a report holds no secret.
        stored = sum(
            1 for e in with_token if secrets.get(store, "environments", e.row["id"], secrets.GITHUB_TOKEN) == e.token
        )
        checked.append(f"secrets: {stored} of {len(with_token)} in the local secret table")
        if stored != len(with_token):
            problems.append(f"secrets: {len(with_token) - stored} not stored")
    return IntegrityCheck(ok=not problems, checked=checked, problems=problems)
