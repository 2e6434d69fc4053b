"""An agent that works offline: it records its task, its chat and its progress in a
local replica, and every write waits in the change log until a sync server is reachable.

    .venv/bin/python examples/offline_agent.py            # a replica in a temporary folder
    .venv/bin/python examples/offline_agent.py agent.db   # or in a file you keep

Run it twice on the same file: the second run finds the first run's work.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import syncstore

STEPS = [
    ("tool", "ran: pytest -q  (3 failed, 120 passed)"),
    ("assistant", "The three failures share one cause: the fixture's clock is naive."),
    ("tool", "edited: tests/conftest.py (timezone-aware clock)"),
    ("tool", "ran: pytest -q  (123 passed)"),
]


def work(store: syncstore.Store) -> None:
    # Local change notifications: called after each commit, as a desktop UI would be.
    store.subscribe("tasks", lambda changes: print(f"  notified: {', '.join(f'{c.op} {c.table}' for c in changes)}"))

    env = store.environments.active()
    if env is None:
        env = store.environments.create("laptop", github_repository="octo/app", config={"python": "3.11"})
        env = store.environments.activate(env.id)
    print(f"environment  {env.name} (active)")

    task = store.tasks.create(
        "Fix the failing tests on main",
        description="CI has been red since this morning.",
        repository=env.github_repository,
        priority="high",
        metadata={"environment": env.id},
    )
    print(f"task         {task.id}  {task.title!r}")
    store.messages.add(task.id, "user", "Please get main green again.")

    # One step at a time, each atomic: the message and the status change commit together.
    for role, content in STEPS:
        with store.transaction():
            store.messages.add(task.id, role, content)
            if task.status == "pending":
                task = store.tasks.update(task.id, status="in_progress", status_message="working")

    task = store.tasks.update(task.id, status="completed", status_message="all tests pass", has_changes=True)
    store.messages.add(task.id, "assistant", "Done: the fixture now uses UTC. All 123 tests pass.")

    print(f"messages     {len(store.messages.for_task(task.id))} on this task")
    print(f"status       {task.status} ({task.status_message})")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        path = Path(argv[1])
        folder = None
    else:
        folder = tempfile.TemporaryDirectory(prefix="syncstore-agent-")
        path = Path(folder.name) / "agent.db"
    try:
        with syncstore.open(str(path)) as store:
            print(f"replica      {path}  (site {store.site_id.hex()[:8]}, no server: working offline)")
            work(store)
            done = store.tasks.list(status="completed", limit=None)
            pending = store.sync_status().pending_changes
            print(f"completed    {len(done)} task(s) in this replica")
            print(f"pending      {pending} changes logged, waiting to be pushed to a sync server")
    except syncstore.SyncstoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if folder is not None:
            folder.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
