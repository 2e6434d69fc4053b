"""The sync page and the banner against a real sync server process: "sync now",
a server that is down, and a token the server refuses."""

from __future__ import annotations

import time

import pytest

import syncstore

pytestmark = pytest.mark.slow


def wait_for(condition, timeout: float = 30, what: str = "the condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_sync_now_pushes_and_pulls(store, console_for, sync_server, sync_token, tmp_path):
    console = console_for(store, sync_url=sync_server.url, sync_token=sync_token)
    with console.client() as client:
        wait_for(lambda: 'data-state="online"' in client.get("/_/banner").text, what="online")
        with syncstore.open(str(tmp_path / "other.db")) as other:
            other.tasks.create("from the other replica")
            other.sync(sync_server.url, token=sync_token)
        store.tasks.create("from the console")
        done = console.post(client, "/sync/now")
        assert done.status_code == 200 and "in sync with the server" in done.text
        assert store.sync_status().pending_changes == 0
        wait_for(lambda: {t.title for t in store.tasks.list()} == {"from the other replica", "from the console"},
                 what="the other replica's task")  # fmt: skip
        page = client.get("/sync").text
        assert 'id="pending">0<' in page and "connected" in page and sync_token not in page


def test_sync_now_with_the_server_down_says_so_and_keeps_the_changes(store, console_for, sync_server, sync_token):
    console = console_for(store, sync_url=sync_server.url, sync_token=sync_token)
    with console.client() as client:
        wait_for(lambda: 'data-state="online"' in client.get("/_/banner").text, what="online")
        sync_server.terminate()
        wait_for(lambda: 'data-state="offline"' in client.get("/_/banner").text, what="offline")
        store.tasks.create("queued while offline")
        failed = console.post(client, "/sync/now")
        assert failed.status_code == 502 and "cannot be reached" in failed.text
        assert store.sync_status().pending_changes == 1
        assert 'data-pending="1"' in client.get("/_/banner").text


def test_a_refused_token_stops_the_sync_and_the_page_says_why(store, console_for, sync_server):
    console = console_for(store, sync_url=sync_server.url, sync_token="not-a-token")
    with console.client() as client:
        wait_for(lambda: "stopped because" in client.get("/sync").text, what="the sync to stop")
        page = client.get("/sync").text
        assert "not-a-token" not in page
        banner = client.get("/_/banner").text
        assert 'data-state="stopped"' in banner and 'id="sync-stopped"' in banner
        failed = console.post(client, "/sync/now")
        assert failed.status_code == 502 and 'class="error" id="sync-message"' in failed.text
