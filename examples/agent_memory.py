"""An agent that remembers in one run and recalls in the next.

    .venv/bin/python examples/agent_memory.py            # two runs on a fresh replica
    .venv/bin/python examples/agent_memory.py agent.db   # one run on agent.db; run it again

Each run is a separate process that opens the replica, recalls what earlier
runs learned (search by wording, offline, with the default embedder), learns
something new, and counts its reads into the synced columns before it exits.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

import syncstore  # noqa: E402

AGENT = "release-bot"
LESSONS = [
    ("learned_pattern", "Staging deploys fail unless the VPN is up; start it first.", ["deploy"]),
    ("error_resolution", "The flaky login test passes after clearing the browser cache fixture.", ["tests"]),
    ("user_preference", "The maintainer wants release notes as short bullet lists.", ["release"]),
]


def one_run(path: str) -> None:
    with syncstore.open(path) as store:
        learned = store.memory.list(agent_id=AGENT, tags=["lesson"])
        number = len(learned) + 1
        print(f"run {number} on {path}: {len(learned)} lessons remembered")

        for question in ("how do I deploy to staging?", "what format for the release notes?"):
            hits = store.memory.search(question, agent_id=AGENT, k=1)
            if hits:
                print(f"  recall {question!r}: {hits[0].memory.content} (score {hits[0].score:.2f})")
            else:
                print(f"  recall {question!r}: nothing remembered yet")

        if number <= len(LESSONS):
            kind, lesson, tags = LESSONS[number - 1]
            store.memory.add(AGENT, lesson, memory_type=kind, tags=["lesson", *tags], importance=7)
            print(f"  learned: {lesson}")
        store.memory.flush_access()  # one synced write per memory read this run


def main() -> None:
    if len(sys.argv) > 1:
        one_run(sys.argv[1])
        return
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "agent.db")
        for _ in range(4):  # four separate processes: nothing survives but the replica
            subprocess.run([sys.executable, __file__, path], check=True)


if __name__ == "__main__":
    main()
