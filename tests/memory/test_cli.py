"""``syncstore memory ...`` through click's CliRunner, on a real replica file."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from click.testing import CliRunner

import syncstore
from syncstore.cli.main import cli


@pytest.fixture
def run(replica_path):
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):
        result = runner.invoke(cli, ["--db", replica_path, "memory", *args], catch_exceptions=False)
        assert (result.exit_code == 0) == ok, result.output
        return result

    return invoke


def test_add_search_list(run):
    first = run("add", "The staging deploy needs VPN access", "--agent", "bot", "--type", "learned_pattern", "--tag", "ops", "--importance", "8").output.strip()
    run("add", "Lemon cake needs three eggs", "--agent", "bot", "--tag", "food")
    run("add", "Other agent's note about deploys", "--agent", "other")
    hits = json.loads(run("search", "deploy to staging", "--agent", "bot", "-k", "1", "--json").output)
    assert [h["memory"]["id"] for h in hits] == [first]
    assert hits[0]["score"] >= hits[0]["similarity"] and hits[0]["memory"]["tags"] == ["ops"]
    assert "VPN" in run("search", "deploy", "--tag", "ops").output
    listed = json.loads(run("list", "--agent", "bot", "--json").output)
    assert {m["content"] for m in listed} == {"The staging deploy needs VPN access", "Lemon cake needs three eggs"}
    assert json.loads(run("list", "--type", "learned_pattern", "--min-importance", "8", "--json").output)[0]["id"] == first
    assert "Lemon" in run("list").output


def test_add_with_a_key_upserts_and_prints_json(run):
    first = json.loads(run("add", "dark mode", "--agent", "bot", "--key", "theme", "--json").output)
    second = json.loads(run("add", "light mode", "--agent", "bot", "--key", "theme", "--json").output)
    assert first["id"] == second["id"] and second["content"] == "light mode"


def test_expire_and_its_sweep_alias(run, replica_path):
    with syncstore.open(replica_path) as store:
        store.memory.add("bot", "stale", expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1))
        store.memory.add("bot", "stale too", expires_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1))
    run("add", "fresh", "--agent", "bot", "--expires-in", "3600")
    assert json.loads(run("expire", "--json").output) == {"expired": 2, "deleted": False}
    assert run("sweep", "--delete").output.strip() == "deleted 2"
    assert [m["content"] for m in json.loads(run("list", "--json").output)] == ["fresh"]


def test_consolidate(run, replica_path):
    with syncstore.open(replica_path) as store:
        for n in range(3):
            memory = store.memory.add("bot", f"Old note number {n}.", importance=2)
            store.update("agent_memory", memory.id, {"updated_at": dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)})
    assert run("consolidate", "bot", "--min-memories", "5").output.strip() == "nothing to consolidate"
    summary = json.loads(run("consolidate", "bot", "--json").output)
    assert summary["memory_type"] == "context_summary" and summary["context"]["consolidated_count"] == 3
    assert [m["id"] for m in json.loads(run("list", "--json").output)] == [summary["id"]]


def test_engines_agree_and_errors_are_one_line(run):
    for text in ("vector engines agree", "engines of steam", "search by vector", "unrelated words", "agree to disagree"):
        run("add", text, "--agent", "bot")
    found = {engine: json.loads(run("--engine", engine, "search", "vector engines", "--json").output) for engine in ("numpy", "sqlite-vec")}
    assert [h["memory"]["id"] for h in found["numpy"]] == [h["memory"]["id"] for h in found["sqlite-vec"]]
    assert len(found["numpy"]) == 5
    failed = run("add", " ", "--agent", "bot", ok=False)
    assert failed.output.startswith("error:") and "content" in failed.output
    http = run("--embedder", "http", "search", "x", ok=False)
    assert "--embedding-url" in http.output
