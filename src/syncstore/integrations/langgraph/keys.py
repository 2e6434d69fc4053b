"""Row ids of the LangGraph tables: made from LangGraph's own keys.

A checkpoint is the row ``("checkpoint", thread, namespace, checkpoint id)``
on every replica, so writing it twice (a retry, a second replica resuming the
same run) writes one row, and two different checkpoints never share one.

The saver's ids are RFC 9562 version-8 UUIDs whose first 48 bits are a hash of
the thread and whose other bits are a hash of the whole key: a thread's rows
sit together in the primary key, so its rows are a range of it (deleting,
copying or pruning a thread reads that range, with no index of its own to keep
up on every write). Store items use UUIDv5 of (namespace, key). The names
hashed are JSON arrays of the key's parts, so no two keys collide by how their
parts are joined.
"""

from __future__ import annotations

import functools
import hashlib
import uuid

import msgspec

# Fixed forever: changing it (or the hashing) would give every existing row a second id.
NAMESPACE = uuid.UUID("5d1c3a0e-7c4b-4e52-9a43-1a6f2b8e9d70")
_encode = msgspec.json.encode
_VARIANT = "89ab"  # the variant nibble: 10xx


def _digest(parts: list[str]) -> str:
    return hashlib.blake2b(_encode(parts), digest_size=16, key=NAMESPACE.bytes).hexdigest()


@functools.lru_cache(maxsize=4096)
def thread_prefix(thread_id: str) -> str:
    """The text every row id of the thread starts with (``xxxxxxxx-xxxx``)."""
    h = _digest(["thread", thread_id])
    return f"{h[:8]}-{h[8:12]}"


def thread_range(thread_id: str) -> tuple[str, str]:
    """Ids ``>= low and < high`` are the thread's (and, rarely, another thread's
    with the same 48-bit hash: callers also compare thread_id)."""
    prefix = thread_prefix(thread_id)
    return prefix + "-", prefix + "."  # "." sorts right after "-"


def _in_thread(thread_id: str, parts: list[str]) -> str:
    h = _digest(parts)
    return f"{thread_prefix(thread_id)}-8{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


def checkpoint_id(thread_id: str, checkpoint_ns: str, checkpoint: str) -> str:
    return _in_thread(thread_id, ["checkpoint", thread_id, checkpoint_ns, checkpoint])


def blob_id(thread_id: str, checkpoint_ns: str, channel: str, version: str) -> str:
    return _in_thread(thread_id, ["blob", thread_id, checkpoint_ns, channel, version])


def write_id(thread_id: str, checkpoint_ns: str, checkpoint: str, task_id: str, idx: int) -> str:
    return _in_thread(thread_id, ["write", thread_id, checkpoint_ns, checkpoint, task_id, str(idx)])


def item_id(namespace: str, key: str) -> str:
    """A store item: ``namespace`` is the JSON array text of its labels."""
    return str(uuid.uuid5(NAMESPACE, _encode(["item", namespace, key]).decode()))
