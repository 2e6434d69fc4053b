"""TCP listeners that misbehave the way real networks and load balancers do.

Each accepts connections on a free local port in a thread of its own and
treats every connection the same way: close at once, reset (SO_LINGER 0),
answer the websocket upgrade with something that is not HTTP, or complete the
handshake and then drop without a close frame.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
from typing import Callable

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _close(conn: socket.socket) -> None:
    conn.close()


def _reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def _garbage_http(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.sendall(b"\x16\x03\x01\x00 this is no HTTP response\r\n\r\n")
    conn.close()


def _handshake(conn: socket.socket) -> None:
    request = conn.recv(65536).decode("latin-1")
    key = next(
        line.split(":", 1)[1].strip()
        for line in request.split("\r\n")
        if line.lower().startswith("sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
    conn.sendall(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode()
    )


def _handshake_then_drop(conn: socket.socket) -> None:
    _handshake(conn)
    conn.close()  # no close frame


def _handshake_then_reset(conn: socket.socket) -> None:
    _handshake(conn)
    _reset(conn)


def _handshake_then_bad_frame(conn: socket.socket) -> None:
    _handshake(conn)
    conn.sendall(b"\x82\x03\xff\xff\xff")  # a binary frame that is not MessagePack of any message
    conn.recv(65536)
    conn.close()


BEHAVIOURS: dict[str, Callable[[socket.socket], None]] = {
    "close": _close,
    "reset": _reset,
    "garbage_http": _garbage_http,
    "handshake_then_drop": _handshake_then_drop,
    "handshake_then_reset": _handshake_then_reset,
    "handshake_then_bad_frame": _handshake_then_bad_frame,
}


class HostilePeer:
    """A listener doing ``behaviour`` to every connection until closed."""

    def __init__(self, behaviour: str):
        self._behaviour = BEHAVIOURS[behaviour]
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, name=f"hostile-{behaviour}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            try:
                self._behaviour(conn)
            except OSError:
                conn.close()

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._thread.join(5)
