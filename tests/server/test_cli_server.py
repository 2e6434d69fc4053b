"""``syncstore server ...``: tokens, migrations, status, rejections and conflicts from the terminal."""

from __future__ import annotations

import asyncio
import json

import psycopg
from click.testing import CliRunner

from syncstore.cli.main import cli
from syncstore.core import protocol as p
from syncstore.core.merge import Cell

from syncstore_server import auth
from syncstore_server.store import open_store

from .helpers import SECRET, insert, new_id, site, stamp, update

A, B = site(1), site(2)


def invoke(*args: str, env: dict[str, str] | None = None):
    result = CliRunner().invoke(cli, ["server", *args], env={"SYNCSTORE_SECRET": SECRET.reveal().decode(), **(env or {})})
    return result


def test_token_mints_a_token_for_the_tenant():
    result = invoke("token", "--tenant", "acme", "--scope", "read", "--ttl", "2h")
    assert result.exit_code == 0, result.output
    identity = auth.verify_token(SECRET, result.output.strip())
    assert identity.tenant == "acme" and identity.scopes == frozenset({"read"})


def test_token_without_a_secret_fails_clearly():
    result = CliRunner().invoke(cli, ["server", "token", "--tenant", "acme"], env={"SYNCSTORE_SECRET": ""})
    assert result.exit_code == 1
    assert "no signing secret" in result.output


def test_migrate_status_and_rollback(database_url):
    from syncstore_server import migrate

    latest = migrate.available()[-1].version
    result = invoke("migrate", "--database-url", database_url)
    assert result.exit_code == 0 and f"0 -> {latest}" in result.output
    status = json.loads(invoke("status", "--database-url", database_url, "--json").output)
    assert status["schema_version"] == latest and status["pending"] == [] and status["log_position"] == 0
    assert "nothing to do" in invoke("migrate", "--database-url", database_url).output
    down = invoke("migrate", "--database-url", database_url, "--to", "0", "--json")
    assert json.loads(down.output)["direction"] == "down"
    assert json.loads(invoke("status", "--database-url", database_url, "--json").output)["schema_version"] == 0


def test_an_unreachable_database_is_one_clear_line():
    result = invoke("status", "--database-url", "postgresql://nobody@127.0.0.1:1/none")
    assert result.exit_code == 1 and result.output.startswith("error: cannot reach the database")


def make_conflict(url: str, tenant: str = "acme") -> str:
    row, h = new_id(), stamp()

    async def main():
        async with open_store(url) as store:
            await store.merge(tenant, A, [p.LocalTx(1, [insert(1, row, h, title="first")])])
            await store.merge(tenant, A, [p.LocalTx(2, [update(2, row, h + 9, {"title": (h, A)}, title="a's")])])
            await store.merge(tenant, B, [p.LocalTx(1, [update(1, row, h + 2, {"title": (h, A)}, title="b's")])])

    asyncio.run(main())
    return row


def test_conflicts_list_show_and_resolve_by_writing_through_the_merge(migrated):
    row = make_conflict(migrated)
    listed = json.loads(invoke("conflicts", "list", "--database-url", migrated, "--json").output)
    (record,) = listed
    assert (record["tenant"], record["table"], record["row_id"], record["column"]) == ("acme", "tasks", row, "title")
    assert (record["winner_value"], record["loser_value"], record["incoming_won"]) == ("a's", "b's", False)
    shown = json.loads(invoke("conflicts", "show", record["id"], "--database-url", migrated, "--json").output)
    assert shown == record
    table = invoke("conflicts", "list", "--database-url", migrated).output
    assert record["id"] in table

    resolved = invoke("conflicts", "resolve", record["id"], "--keep", "loser", "--database-url", migrated, "--json")
    assert resolved.exit_code == 0, resolved.output
    assert json.loads(resolved.output)["resolved_by"] == "cli"

    async def after():
        async with open_store(migrated) as store:
            return await store.cells("acme", "tasks", row), await store.read_log("acme", 0), await store.server_site()

    cells, (log, _), server_site = asyncio.run(after())
    assert cells["title"].value == "b's" and cells["title"].site == server_site
    assert cells["title"].hlc > record["winner_hlc"]  # newer than what it replaces: wins everywhere
    last = log[-1][1]
    assert last.changes[0].cells["title"] == tuple(Cell("b's", cells["title"].hlc, server_site))  # it syncs
    assert last.conflicts == []  # it saw what it replaced: no new conflict
    assert json.loads(invoke("conflicts", "list", "--database-url", migrated, "--json").output) == []
    again = invoke("conflicts", "resolve", record["id"], "--database-url", migrated)
    assert again.exit_code == 1 and "already resolved" in again.output


def test_resolve_with_a_new_value_and_keep_winner(migrated):
    make_conflict(migrated, "one")
    make_conflict(migrated, "two")
    records = json.loads(invoke("conflicts", "list", "--database-url", migrated, "--json").output)
    by_tenant = {r["tenant"]: r for r in records}
    bad = invoke("conflicts", "resolve", by_tenant["one"]["id"], "--value", "42", "--database-url", migrated)
    assert bad.exit_code == 1 and "expected text" in bad.output
    ok = invoke("conflicts", "resolve", by_tenant["one"]["id"], "--value", '"agreed"', "--database-url", migrated)
    assert ok.exit_code == 0, ok.output
    kept = invoke("conflicts", "resolve", by_tenant["two"]["id"], "--database-url", migrated)
    assert kept.exit_code == 0
    with psycopg.connect(migrated) as conn:
        titles = dict(conn.execute("SELECT tenant, title FROM syncstore.tasks").fetchall())
    assert titles == {"one": "agreed", "two": "a's"}
    assert json.loads(invoke("conflicts", "list", "--all", "--tenant", "two", "--database-url", migrated, "--json").output)


def test_rejections_are_listed(migrated):
    async def main():
        async with open_store(migrated) as store:
            await store.merge("acme", A, [p.LocalTx(3, [insert(1, new_id(), stamp(), title=5)])])

    asyncio.run(main())
    found = json.loads(invoke("rejections", "--database-url", migrated, "--json").output)
    assert [(r["tenant"], r["tx"], r["code"]) for r in found] == [("acme", 3, "bad_value")]


def test_the_daemon_on_an_unreachable_database_fails_in_one_line():
    result = invoke("run", "--database-url", "postgresql://nobody@127.0.0.1:1/none", "--port", "0")
    assert result.exit_code == 1
    assert result.output.startswith("error: cannot reach the database")
    assert "Traceback" not in result.output
