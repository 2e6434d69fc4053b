"""The background sync thread never dies: each failure the transport can
produce is retried, and the replica syncs once a real server is reachable.

Hostile peers are real TCP listeners (see ``hostile_peers``); raw exceptions
are injected through the connection's ``transport_factory`` seam, at connect,
send, receive and close, one after another on one running handle.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
from collections import deque
from typing import Any, Callable

import pytest
from click.testing import CliRunner
from websockets.exceptions import (
    ConcurrencyError,
    ConnectionClosedError,
    InvalidHandshake,
    InvalidMessage,
    InvalidState,
    PayloadTooBig,
)
from websockets.exceptions import ProtocolError as WebSocketProtocolError

from syncstore.cli.main import cli
from syncstore.errors import AuthError, SyncAuthError, SyncError
from syncstore.sync.transport import Closed, Transport

from .conftest import server_rows
from .hostile_peers import BEHAVIOURS, HostilePeer

pytestmark = pytest.mark.postgres

WAIT = 60.0
FAST = dict(backoff_base=0.01, backoff_max=0.05, open_timeout=5.0)

# Every kind of exception the websocket stack below the transport is known to raise.
RAW_ERRORS: list[Callable[[], BaseException]] = [
    lambda: ConnectionClosedError(None, None),
    lambda: InvalidMessage("did not receive a valid HTTP response"),
    lambda: InvalidHandshake("handshake failed"),
    lambda: InvalidState("connection is closing"),
    lambda: ConcurrencyError("two threads called recv"),
    lambda: PayloadTooBig(None, 16),
    lambda: WebSocketProtocolError("bad frame"),
    lambda: EOFError("stream ends after 0 bytes"),
    lambda: ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
    lambda: ssl.SSLCertVerificationError(1, "certificate verify failed"),
    lambda: ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    lambda: ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
    lambda: BrokenPipeError(errno.EPIPE, "Broken pipe"),
    lambda: socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
    lambda: TimeoutError("timed out during opening handshake"),
    lambda: UnicodeError("label too long"),
    lambda: RuntimeError("a bug below the sync loop"),
]


class Faulty(Transport):
    """A real connection to the server whose ``where`` (send, get or close)
    raises ``error`` the first time it is called. One that fails at close
    reports the connection lost first, so that close comes at once."""

    def __init__(self, url: str, *, where: str, error: BaseException, **kw: Any):
        super().__init__(url, **kw)
        self._where = where
        self._error: BaseException | None = error

    def _maybe_raise(self, where: str) -> None:
        if self._where == where and self._error is not None:
            error, self._error = self._error, None
            raise error

    def send(self, message: Any) -> None:
        self._maybe_raise("send")
        super().send(message)

    def get(self, timeout: float | None) -> Any:
        self._maybe_raise("get")
        if self._where == "close":
            return Closed(SyncError("cut by the test"))
        return super().get(timeout)

    def close(self) -> None:
        super().close()
        self._maybe_raise("close")


class Script:
    """A transport factory that plays its steps, one per connection, then
    connects to the real server for good."""

    def __init__(self, steps: list[Callable[..., Transport]]):
        self.steps = deque(steps)
        self.played = 0

    def __call__(self, url: str, **kw: Any) -> Transport:
        if self.steps:
            self.played += 1
            return self.steps.popleft()(url, **kw)
        return Transport(url, **kw)


def to_peer(peer: HostilePeer) -> Callable[..., Transport]:
    return lambda url, **kw: Transport(peer.url, **kw)


def raising(make: Callable[[], BaseException]) -> Callable[..., Transport]:
    def step(url: str, **kw: Any) -> Transport:
        raise make()

    return step


def faulty(where: str, make: Callable[[], BaseException]) -> Callable[..., Transport]:
    return lambda url, **kw: Faulty(url, where=where, error=make(), **kw)


@pytest.fixture
def peers():
    opened = {name: HostilePeer(name) for name in BEHAVIOURS}
    yield opened
    for peer in opened.values():
        peer.close()


def test_hostile_peers_only_delay_the_sync(sync_server, tenant, replicas, peers):
    """A peer that closes, resets, answers garbage or drops after the
    handshake, each twice: the thread retries every time and syncs after."""
    a = replicas()
    task = a.tasks.create("written before any server answered")
    script = Script([to_peer(peer) for peer in peers.values()] * 2)
    handle = a.start_sync(sync_server.url, token=sync_server.token(tenant), transport_factory=script, **FAST)
    assert handle.wait_synced(WAIT), handle.status()
    assert handle.running and handle.error is None
    assert script.played == 2 * len(peers) and handle.failures >= 2 * len(peers)
    assert all(peer.accepted >= 2 for peer in peers.values())
    assert task.id in server_rows(sync_server.database_url, tenant)
    status = a.sync_status()
    assert status.connected and status.pending == 0 and status.stopped is None


def test_every_raw_transport_exception_is_retried(sync_server, tenant, replicas, caplog):
    """Each exception class the websocket stack can raise, at connect and
    from send, receive and close of an open connection: the thread retries
    each, and the replica syncs once the transport behaves."""
    a = replicas()
    task = a.tasks.create("offline")
    steps = [raising(make) for make in RAW_ERRORS]
    for where in ("send", "get", "close"):
        steps += [faulty(where, make) for make in RAW_ERRORS]
    script = Script(steps)
    with caplog.at_level(logging.WARNING, logger="syncstore.sync"):
        handle = a.start_sync(sync_server.url, token=sync_server.token(tenant), transport_factory=script, **FAST)
        assert handle.wait_synced(WAIT), handle.status()
    assert handle.running and handle.error is None
    assert script.played == len(steps)
    assert task.id in server_rows(sync_server.database_url, tenant)
    # A bug is logged with its traceback; the thread went on regardless. The
    # transport's own failures are warnings.
    bugs = [r for r in caplog.records if "a bug below the sync loop" in r.getMessage()]
    assert len(bugs) == 4 and all(r.levelno == logging.ERROR and r.exc_info for r in bugs)
    resets = [r for r in caplog.records if "Connection reset by peer" in r.getMessage()]
    assert len(resets) == 4 and all(r.levelno == logging.WARNING for r in resets)


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOURS))
def test_one_round_against_a_hostile_peer_raises_a_sync_error(replicas, peers, behaviour):
    a = replicas()
    with pytest.raises(SyncError) as raised:
        a.sync(peers[behaviour].url, token="any", timeout=10)
    assert type(raised.value).__module__ == "syncstore.errors"
    assert a.sync_status().last_error == str(raised.value)


@pytest.mark.parametrize("make", RAW_ERRORS, ids=lambda make: type(make()).__name__)
def test_one_round_raises_only_sync_errors(sync_server, tenant, replicas, make):
    a = replicas()
    with pytest.raises(SyncError):
        a.sync(sync_server.url, token=sync_server.token(tenant), timeout=10, transport_factory=raising(make))


def test_a_refused_token_stops_the_thread_and_says_so_in_one_line(sync_server, tenant, replicas, tmp_path):
    a = replicas("refused")
    handle = a.start_sync(sync_server.url, token="not-a-token", **FAST)
    assert not handle.wait_synced(WAIT)
    assert not handle.running
    assert isinstance(handle.error, SyncAuthError) and isinstance(handle.error, AuthError)
    status = a.sync_status()
    assert status.stopped.startswith("sync stopped (bad_token): ")
    assert "start the sync again with a token" in status.stopped and "\n" not in status.stopped
    assert "not-a-token" not in status.stopped
    # Another process (the CLI) reads the same line from the file.
    shown = CliRunner().invoke(cli, ["--db", a.path, "sync", "status"])
    assert shown.exit_code == 0, shown.output
    assert status.stopped in shown.output


def test_a_welcome_clears_the_stop(sync_server, tenant, replicas):
    a = replicas()
    stopped = a.start_sync(sync_server.url, token="not-a-token", **FAST)
    assert not stopped.wait_synced(WAIT)
    assert a.sync_status().stopped
    stopped.stop()
    with a.start_sync(sync_server.url, token=sync_server.token(tenant), **FAST) as handle:
        assert handle.wait_synced(WAIT)
        assert a.sync_status().stopped is None
