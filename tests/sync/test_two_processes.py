"""The walk-through, by the CLI in separate processes: two replicas, one offline,
both edit the same task, they converge through a running server, and the
conflict shows in ``syncstore conflicts list``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import syncstore

pytestmark = pytest.mark.postgres


class Cli:
    """Runs ``syncstore --db PATH ...`` in a new process each time."""

    def __init__(self, db: str, url: str, token: str):
        self.db = db
        self.token = token
        self.env = {**os.environ, "SYNCSTORE_URL": url, "SYNCSTORE_TOKEN": token}

    def command(self, *args: str) -> list[str]:
        entry = "from syncstore.cli.main import cli; cli(prog_name='syncstore')"
        return [sys.executable, "-c", entry, "--db", self.db, *args]

    def __call__(self, *args: str, ok: bool = True) -> str:
        done = subprocess.run(self.command(*args), capture_output=True, text=True, env=self.env, timeout=120)
        assert self.token not in done.stdout + done.stderr  # never printed
        if ok:
            assert done.returncode == 0, done.stderr
        return done.stdout

    def json(self, *args: str):
        return json.loads(self(*args, "--json"))


@pytest.fixture
def two(sync_server, tenant, tmp_path):
    token = sync_server.token(tenant)
    return Cli(str(tmp_path / "a.db"), sync_server.url, token), Cli(str(tmp_path / "b.db"), sync_server.url, token)


def test_two_replicas_one_offline_converge_and_show_the_conflict(two):
    a, b = two
    task_id = a("tasks", "add", "Write the report").strip()
    a("sync")
    b("sync")
    assert b.json("tasks", "show", task_id)["task"]["title"] == "Write the report"

    # b is offline: its edit waits in its change log.
    b("tasks", "update", task_id, "--title", "Report (b's version)")
    assert b.json("sync", "status")["pending_changes"] == 1
    a("tasks", "update", task_id, "--title", "Report (a's version)")
    a("sync")

    # b comes back; a syncs once more: both converge.
    b("sync")
    a("sync")
    b("sync")
    title_a = a.json("tasks", "show", task_id)["task"]["title"]
    title_b = b.json("tasks", "show", task_id)["task"]["title"]
    assert title_a == title_b and title_a in ("Report (a's version)", "Report (b's version)")

    for cli in (a, b):
        found = [c for c in cli.json("conflicts", "list") if c["column"] == "title"]
        assert len(found) == 1 and found[0]["row_id"] == task_id
        assert {found[0]["winner_value"], found[0]["loser_value"]} == {"Report (a's version)", "Report (b's version)"}
        assert found[0]["winner_value"] == title_a
        assert "title" in cli("conflicts", "list")
    conflict_id = found[0]["id"]
    assert "winner" in b("conflicts", "show", conflict_id[:18])

    # A person settles it on b with a new value; it syncs like any edit.
    b("conflicts", "resolve", conflict_id, "--value", '"Report (agreed)"')
    b("sync")
    a("sync")
    assert a.json("tasks", "show", task_id)["task"]["title"] == "Report (agreed)"
    assert [c for c in b.json("conflicts", "list") if c["id"] == conflict_id] == []
    assert "resolved (value)" in b("conflicts", "list", "--all")
    status = b("status")
    assert "acked up to" in status and "0 changes pending" in status


def test_cli_refuses_bad_input_clearly(two):
    a, _ = two
    out = subprocess.run(a.command("conflicts", "resolve", "nope", "--keep", "winner"), capture_output=True, text=True, env=a.env)
    assert out.returncode == 1 and "no row with id 'nope'" in out.stderr
    out = subprocess.run(a.command("conflicts", "resolve", "x"), capture_output=True, text=True, env=a.env)
    assert out.returncode == 1 and "exactly one of" in out.stderr
    env = {k: v for k, v in a.env.items() if k != "SYNCSTORE_TOKEN"}
    out = subprocess.run(a.command("sync"), capture_output=True, text=True, env=env)
    assert out.returncode == 1 and "token" in out.stderr
    out = subprocess.run(a.command("sync", "--token", "forged"), capture_output=True, text=True, env=a.env)
    assert out.returncode == 1 and "bad_token" in out.stderr and "forged" not in out.stderr


def test_sync_watch_keeps_a_replica_live_until_sigterm(two):
    a, b = two
    watch = subprocess.Popen(b.command("sync", "--watch"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=b.env)
    try:
        task_id = a("tasks", "add", "seen live").strip()
        a("sync")
        deadline = time.monotonic() + 60
        found = None
        while found is None and time.monotonic() < deadline and watch.poll() is None:
            with syncstore.open(b.db) as store:
                found = store.tasks.find(task_id)
        assert found is not None and found.title == "seen live"
        watch.send_signal(signal.SIGTERM)
        out, err = watch.communicate(timeout=60)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0, err
    with syncstore.open(b.db) as store:
        cursor = store.sync_status().cursor
    assert cursor > 0 and f"stopped: 0 changes pending, acked 0, cursor {cursor}" in out
    assert b.token not in out + err


def test_the_example_walk_through_runs_against_a_running_server(sync_server, tenant):
    script = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "two_replicas.py")
    token = sync_server.token(tenant)
    done = subprocess.run(
        [sys.executable, script, "--url", sync_server.url],
        capture_output=True,
        text=True,
        env={**os.environ, "SYNCSTORE_TOKEN": token},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "laptop sees: Quarterly report (final)" in done.stdout
    assert token not in done.stdout + done.stderr
