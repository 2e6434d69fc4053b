"""``syncstore ui``: a real process that prints its address with a new token,
serves the console there, and stops cleanly on SIGTERM."""

from __future__ import annotations

import socket

import httpx
from click.testing import CliRunner

import syncstore
from syncstore.cli.main import cli

from console.running import UiProcess


def test_ui_prints_a_url_with_a_new_token_and_serves_the_console(tmp_path):
    path = str(tmp_path / "agent.db")
    with syncstore.open(path) as store:
        store.tasks.create("Shown in the console")
    tokens = []
    for _ in range(2):
        with UiProcess(path) as ui:
            assert ui.url == f"http://127.0.0.1:{ui.port}/?token={ui.token}"
            assert len(ui.token) >= 32
            tokens.append(ui.token)
            with httpx.Client(timeout=30) as client:
                assert client.get(f"{ui.base}/tasks").status_code == 403
                page = client.get(ui.url, follow_redirects=True)
                assert page.status_code == 200 and "Shown in the console" in page.text
            assert ui.stop() == 0
    assert tokens[0] != tokens[1]  # a new token for every run


def test_the_sync_token_is_never_printed_or_shown(tmp_path):
    secret = "sync-token-" + "z" * 40
    with UiProcess(str(tmp_path / "agent.db"), url="ws://127.0.0.1:9", token=secret) as ui:
        with httpx.Client(timeout=30) as client:
            pages = [client.get(ui.url, follow_redirects=True).text, client.get(f"{ui.base}/sync").text]
        ui.stop()
    assert secret not in ui.log()
    assert all(secret not in page for page in pages)
    assert "ws://127.0.0.1:9" in pages[1]


def test_ui_refuses_half_a_sync_configuration_and_a_taken_port(tmp_path):
    runner = CliRunner()
    db = str(tmp_path / "agent.db")
    env = {"SYNCSTORE_URL": "", "SYNCSTORE_TOKEN": ""}
    half = runner.invoke(cli, ["--db", db, "ui", "--url", "ws://127.0.0.1:9"], env=env)
    assert half.exit_code == 1 and "give both --url and --token" in half.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        busy = runner.invoke(cli, ["--db", db, "ui", "--port", str(port)], env=env)
    assert busy.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in busy.output
