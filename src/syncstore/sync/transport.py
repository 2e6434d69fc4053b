"""One websocket to the sync server: messages out, one queue of what comes in.

A reader thread turns incoming frames into decoded messages on a bounded
queue (:mod:`syncstore.sync.inbox`) that also carries wake-ups from local
writers, so the sync loop waits on one thing and reacts at once to either, and
a replica that applies slowly makes the server slow down rather than grow this
process's memory.

Every failure of websockets, the socket layer, TLS or the peer (a reset during
the handshake, a connection lost without a close frame, a reply that is not
HTTP, ...) becomes a :class:`~syncstore.errors.SyncError` here, at the
boundary: ``Transport()``, ``send()`` and ``get()`` raise or report nothing
else, and ``close()`` never raises.
"""

from __future__ import annotations

import logging
import threading
from contextlib import ExitStack
from typing import NamedTuple, Union
from urllib.parse import urlsplit, urlunsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI, WebSocketException
from websockets.sync.client import ClientConnection, connect

from syncstore.core import protocol as p
from syncstore.errors import ProtocolError, SyncError
from syncstore.sync.inbox import DEFAULT_MAX_BYTES, DEFAULT_MAX_MESSAGES, Inbox

log = logging.getLogger("syncstore.sync")

DEFAULT_OPEN_TIMEOUT = 10.0
DEFAULT_MAX_FRAME = 16 * 1024 * 1024  # largest frame accepted from the server
DEFAULT_MAX_QUEUE = DEFAULT_MAX_MESSAGES  # decoded messages waiting for the sync loop
DEFAULT_MAX_QUEUE_BYTES = DEFAULT_MAX_BYTES  # ... and their frames' bytes
# Frames websockets buffers below our queue before it stops reading the socket.
_WS_MAX_QUEUE = 4
# What a peer, the network, TLS or the websocket layer can raise: a transport
# failure, never a bug of ours (ValueError: an IDNA host name too long, ...).
TRANSPORT_ERRORS = (WebSocketException, OSError, EOFError, TimeoutError, UnicodeError)
_TRANSPORT_ERRORS = (*TRANSPORT_ERRORS, ValueError)


class Received(NamedTuple):
    message: p.Message


class Closed(NamedTuple):
    error: Exception


class Wake(NamedTuple):
    pass


Item = Union[Received, Closed, Wake]


def redact(url: str) -> str:
    """The URL without user info or query (either may carry a credential)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class Transport:
    """An open connection. ``get`` waits for the next item; ``wake`` interrupts it."""

    def __init__(
        self,
        url: str,
        *,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT,
        max_frame: int = DEFAULT_MAX_FRAME,
        ping_interval: float | None = 20.0,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
    ):
        self.url = redact(url)
        self._inbox: Inbox[Item] = Inbox(max_messages=max_queue, max_bytes=max_queue_bytes)
        self._stack = ExitStack()  # connect() is a context manager; close() leaves it
        try:
            self._ws: ClientConnection = self._stack.enter_context(connect(
                url,
                open_timeout=open_timeout,
                max_size=max_frame,
                max_queue=_WS_MAX_QUEUE,
                compression=None,  # MessagePack of clocks and ids compresses poorly; save the CPU
                ping_interval=ping_interval,
                ping_timeout=ping_interval,
                close_timeout=2.0,
            ))
        except InvalidURI as exc:
            raise SyncError(f"not a websocket URL: {self.url} ({exc})") from None
        except InvalidStatus as exc:
            raise SyncError(f"{self.url}: the server refused the websocket (HTTP {exc.response.status_code})") from None
        except ConnectionClosed as exc:
            raise SyncError(f"cannot connect to {self.url}: the connection was lost during the handshake ({_why(exc)})") from None
        except _TRANSPORT_ERRORS as exc:
            raise SyncError(f"cannot connect to {self.url}: {describe(exc)}") from None
        except Exception as exc:  # anything else the stack below may raise is still a failed connection
            raise SyncError(f"cannot connect to {self.url}: {describe(exc)}") from exc
        self._reader = threading.Thread(target=self._read, name="syncstore-sync-reader", daemon=True)
        self._reader.start()

    @property
    def inbox(self) -> Inbox[Item]:
        """The incoming queue (its bounds and whether the reader had to wait)."""
        return self._inbox

    def _read(self) -> None:
        inbox = self._inbox
        try:
            for frame in self._ws:
                try:
                    message = p.decode(frame)
                except ProtocolError as exc:
                    inbox.put_last(Closed(exc))
                    try:
                        self._ws.close(code=1002, reason="bad frame")
                    except Exception:
                        pass  # the connection is given up either way
                    return
                if not inbox.put(Received(message), len(frame)):
                    return  # closed by the sync loop: nobody reads on
        except ConnectionClosed as exc:
            inbox.put_last(Closed(SyncError(f"{self.url}: connection lost ({_why(exc)})")))
            return
        except BaseException as exc:  # the reader must always report why it stopped
            inbox.put_last(Closed(SyncError(f"{self.url}: connection failed ({describe(exc)})")))
            return
        inbox.put_last(Closed(SyncError(f"{self.url}: the server closed the connection ({_why(None, self._ws)})")))

    def send(self, message: p.Message) -> None:
        try:
            self._ws.send(p.encode(message))
        except ConnectionClosed as exc:
            raise SyncError(f"{self.url}: connection lost while sending ({_why(exc)})") from None
        except _TRANSPORT_ERRORS as exc:
            raise SyncError(f"{self.url}: cannot send ({describe(exc)})") from None
        except Exception as exc:
            raise SyncError(f"{self.url}: cannot send ({describe(exc)})") from exc

    def get(self, timeout: float | None) -> Item | None:
        """The next item, or None when ``timeout`` seconds pass first."""
        woken, item = self._inbox.get(timeout)
        return Wake() if woken else item

    def wake(self) -> None:
        """Interrupt ``get`` (from any thread; never blocks)."""
        self._inbox.wake()

    def close(self) -> None:
        """Close the websocket and stop the reader; never raises (the
        connection is being given up either way)."""
        self._inbox.close()  # a reader waiting for room stops
        try:
            self._stack.close()
        except Exception as exc:
            log.debug("closing %s: %s", self.url, describe(exc))
        self._reader.join(timeout=5.0)


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _why(exc: ConnectionClosed | None, ws: ClientConnection | None = None) -> str:
    close = exc.rcvd if exc is not None else (ws.close_code, ws.close_reason) if ws is not None else None
    if close is None:
        return "no close frame"
    if isinstance(close, tuple):
        code, reason = close
    else:
        code, reason = close.code, close.reason
    return f"code {code}{': ' + reason if reason else ''}"
