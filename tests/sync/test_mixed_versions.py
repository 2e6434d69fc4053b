"""Mixed schema versions: every pair of (old, new) client and server keeps syncing.

Real server and client code of two schema versions, each in a process of its
own (see ``schema_peers``): the old version lacks one column of ``tasks`` and
the table ``workflows``. Old and new clients write through an old or a new
server, then each version's replicas and PostgreSQL must hold the same cells
(values and clocks) in every table and column that version knows, every sync
round must finish without a refusal, and a round with nothing new must change
nothing (no loop). A new client facing an old server keeps what it cannot
take and says so once in its status; once the server is upgraded, it pushes it.
"""

from __future__ import annotations

from typing import Any

import pytest

from syncstore import schema

from .conftest import server_cells, server_log_count
from .schema_peers import COLUMN, TABLE, Client, Server

TABLE_OF_COLUMN, NEW_COLUMN = COLUMN
OLD_TASK_CELLS = {*schema.table("tasks").column_names[1:], "_deleted"} - {NEW_COLUMN}
ALL_TASK_CELLS = {*schema.table("tasks").column_names[1:], "_deleted"}
WORKFLOW = {"name": "nightly", "definition": '{"steps":[]}'}


@pytest.fixture
def peers(tmp_path, fresh_database):
    """Start servers and clients of either version; all stopped afterwards."""
    started: list[Any] = []

    class Peers:
        database_url = fresh_database()

        def server(self, which: str) -> Server:
            server = Server(which, self.database_url)
            started.append(server)
            return server.start()

        def client(self, which: str, name: str) -> Client:
            client = Client(which, str(tmp_path / f"{name}.db"))
            started.append(client)
            return client

    yield Peers()
    for peer in reversed(started):
        peer.close() if isinstance(peer, Client) else peer.stop()


def only(rows: dict[str, dict[str, list[Any]]], names: set[str]) -> dict[str, dict[str, list[Any]]]:
    return {row_id: {n: c for n, c in cells.items() if n in names} for row_id, cells in rows.items()}


def sync_clean(client: Client, server: Server, tenant: str) -> dict[str, Any]:
    """One round that must finish with nothing refused."""
    result = client.sync(server, tenant)
    assert result["rejected"] == 0, result
    return result


def write_both_ways(old: Client, new: Client, server: Server, tenant: str) -> dict[str, str]:
    """Old and new clients write rows of each other's and their own, then sync
    back and forth; returns the ids written."""
    ids = {
        "new_task": new.insert("tasks", title="from new", **{NEW_COLUMN: "set by new"}),
        "workflow": new.insert(TABLE, **WORKFLOW),
        "old_task": old.insert("tasks", title="from old"),
        "old_gone": old.insert("tasks", title="deleted by old"),
    }
    for client in (new, old, new):
        sync_clean(client, server, tenant)
    old.update("tasks", ids["new_task"], status="in_progress")  # an old client edits a new client's row
    old.call("delete", table="tasks", id=ids["old_gone"])
    new.update("tasks", ids["old_task"], **{NEW_COLUMN: "added by new"})  # the new column on an old row
    new.update("tasks", ids["new_task"], title="renamed by new")
    new.update(TABLE, ids["workflow"], description="edited")
    for client in (old, new, old, new):
        sync_clean(client, server, tenant)
    return ids


def assert_nothing_loops(clients: list[Client], server: Server, tenant: str) -> None:
    """Another round of each client with nothing new: nothing pushed, nothing
    logged, nothing pending, no error kept."""
    logged = server_log_count(server.database_url, tenant)
    for client in clients:
        result = sync_clean(client, server, tenant)
        assert result["pushed"] == 0 and result["received"] == 0, result
        status = client.call("status")
        assert status["pending_changes"] == 0 and status["last_error"] is None and status["reverting"] == 0
    assert server_log_count(server.database_url, tenant) == logged


def test_old_and_new_clients_converge_through_a_new_server(peers, tenant):
    server = peers.server("new")
    old, new = peers.client("old", "old"), peers.client("new", "new")
    ids = write_both_ways(old, new, server, tenant)

    held = server_cells(peers.database_url, tenant, "tasks")
    assert held[ids["new_task"]][NEW_COLUMN][0] == "set by new"
    assert held[ids["old_task"]][NEW_COLUMN][0] == "added by new"
    assert held[ids["new_task"]]["status"][0] == "in_progress"
    # Each version holds exactly the server's cells of what it knows, clocks included.
    assert new.call("cells", table="tasks") == only(held, ALL_TASK_CELLS)
    assert old.call("cells", table="tasks") == only(held, OLD_TASK_CELLS)
    assert new.call("cells", table=TABLE) == server_cells(peers.database_url, tenant, TABLE)
    assert new.call("status")["schema_notice"] is None

    # Fresh replicas of both versions bootstrap from the server's snapshot (an
    # old client's insert left no cell that a new replica refuses).
    fresh_old, fresh_new = peers.client("old", "fresh_old"), peers.client("new", "fresh_new")
    for client in (fresh_old, fresh_new):
        sync_clean(client, server, tenant)
    assert fresh_new.call("cells", table="tasks") == only(held, ALL_TASK_CELLS)
    assert fresh_new.call("cells", table=TABLE) == server_cells(peers.database_url, tenant, TABLE)
    assert fresh_old.call("cells", table="tasks") == only(held, OLD_TASK_CELLS)
    assert_nothing_loops([old, new, fresh_old, fresh_new], server, tenant)


def test_an_old_clients_insert_takes_the_new_columns_defaults_at_its_own_clock(peers, tenant):
    server = peers.server("new")
    old = peers.client("old", "old")
    row_id = old.insert("tasks", title="from old")
    sync_clean(old, server, tenant)
    cells = server_cells(peers.database_url, tenant, "tasks")[row_id]
    default = schema.table("tasks").column(NEW_COLUMN).default
    assert cells[NEW_COLUMN][0] == default
    assert cells[NEW_COLUMN][1:] == cells["title"][1:]  # the insert's clock, never the zero clock


def test_old_and_new_clients_converge_through_an_old_server_and_the_new_parts_wait(peers, tenant):
    server = peers.server("old")
    old, new = peers.client("old", "old"), peers.client("new", "new")
    ids = write_both_ways(old, new, server, tenant)

    held = server_cells(peers.database_url, tenant, "tasks")
    assert old.call("cells", table="tasks") == only(held, OLD_TASK_CELLS)
    assert only(new.call("cells", table="tasks"), OLD_TASK_CELLS) == only(held, OLD_TASK_CELLS)
    # The old server took none of the new column and table: the new client keeps them, and says so.
    assert all(cells.get(NEW_COLUMN, [None])[0] is None for cells in held.values())
    assert server_cells(peers.database_url, tenant, TABLE) == {}
    assert new.call("cells", table="tasks")[ids["old_task"]][NEW_COLUMN][0] == "added by new"
    status = new.call("status")
    assert status["held_changes"] > 0 and status["server_schema"] == status["synced_schema"] - 1
    assert f"{TABLE_OF_COLUMN}.{NEW_COLUMN}" in status["schema_notice"] and TABLE in status["schema_notice"]

    fresh_new = peers.client("new", "fresh_new")
    sync_clean(fresh_new, server, tenant)
    assert only(fresh_new.call("cells", table="tasks"), OLD_TASK_CELLS) == only(held, OLD_TASK_CELLS)
    assert_nothing_loops([old, new, fresh_new], server, tenant)

    # The server is upgraded: the new client pushes what it kept, and every
    # replica of each version ends equal to PostgreSQL again.
    server.stop()
    upgraded = peers.server("new")
    for client in (new, old, fresh_new, new, old, fresh_new):
        sync_clean(client, upgraded, tenant)
    held = server_cells(peers.database_url, tenant, "tasks")
    assert held[ids["old_task"]][NEW_COLUMN][0] == "added by new"
    assert held[ids["new_task"]][NEW_COLUMN][0] == "set by new"
    workflows = server_cells(peers.database_url, tenant, TABLE)
    assert workflows[ids["workflow"]]["description"][0] == "edited"
    for client in (new, fresh_new):
        assert client.call("cells", table="tasks") == only(held, ALL_TASK_CELLS)
        assert client.call("cells", table=TABLE) == workflows
    assert old.call("cells", table="tasks") == only(held, OLD_TASK_CELLS)
    status = new.call("status")
    assert status["held_changes"] == 0 and status["schema_notice"] is None
    assert_nothing_loops([old, new, fresh_new], upgraded, tenant)


def test_an_upgraded_client_takes_the_columns_it_did_not_know(peers, tenant):
    server = peers.server("new")
    new = peers.client("new", "new")
    old = peers.client("old", "old")
    row_id = new.insert("tasks", title="from new", **{NEW_COLUMN: "only new knows"})
    new.insert(TABLE, **WORKFLOW)
    sync_clean(new, server, tenant)
    sync_clean(old, server, tenant)
    old.close()

    upgraded = peers.client("new", "old")  # the same replica file, now opened by the new version
    sync_clean(upgraded, server, tenant)
    held = server_cells(peers.database_url, tenant, "tasks")
    assert held[row_id][NEW_COLUMN][0] == "only new knows"
    assert upgraded.call("cells", table="tasks") == only(held, ALL_TASK_CELLS)
    assert upgraded.call("cells", table=TABLE) == server_cells(peers.database_url, tenant, TABLE)
    assert_nothing_loops([upgraded], server, tenant)
