"""examples/langgraph_offline.py runs with no server, then hands a thread to another machine by sync."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import syncstore

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "langgraph_offline.py")


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, EXAMPLE, *args], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_example_runs_offline_and_remembers_between_runs(tmp_path):
    db = str(tmp_path / "agent.db")
    first = run("--db", db)
    assert "recalled 0 memories" in first and "6 checkpoints" in first
    assert re.search(r"working offline: \d+ changes waiting", first)
    second = run("--db", db)
    assert "recalled 1 memories" in second and "liked an answer about how do I deploy?" in second
    with syncstore.open(db) as store:
        assert store.count("langgraph_checkpoints") == 12 and store.count("langgraph_store") == 2


@pytest.mark.postgres
def test_a_thread_left_for_review_is_approved_on_another_machine(tmp_path, sync_server, tenant):
    url, token = sync_server.url, sync_server.token(tenant)
    left = run("--db", str(tmp_path / "laptop.db"), "--leave-for-review", "--url", url, "--token", token)
    thread = re.search(r"thread (\S+): waiting", left).group(1)
    assert "4 checkpoints" in left and "synced with" in left
    approved = run("--db", str(tmp_path / "server.db"), "--resume", "--thread", thread, "--url", url, "--token", token)
    assert "reviewed: approved=True" in approved and "6 checkpoints" in approved
