"""Identifiers: time-ordered UUIDv7 row ids and random site ids."""

from __future__ import annotations

import os
import time
import uuid

_MS = (1 << 48) - 1
# UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, version 7 in bits 76-79,
# variant 0b10 in bits 62-63, random bits everywhere else.
_CLEAR = ~(0xF << 76 | 0x3 << 62)
_SET = 0x7 << 76 | 0x2 << 62


def uuid7() -> str:
    """A UUIDv7 string: 48 bits of Unix milliseconds, then random bits."""
    value = (time.time_ns() // 1_000_000 & _MS) << 80 | int.from_bytes(os.urandom(10), "big")
    # Formatted directly: uuid.UUID(int=...) and str() of it cost twice as much.
    h = f"{value & _CLEAR | _SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_site_id() -> bytes:
    return uuid.uuid4().bytes
