"""Row ids of the LangGraph tables: UUIDv5 of LangGraph's own keys.

A checkpoint is the row ``("checkpoint", thread, namespace, checkpoint id)``
on every replica, so writing it twice (a retry, a second replica resuming the
same run) writes one row, and two different checkpoints never share one. The
name hashed is the JSON array of the key's parts, so no two keys can collide
by how their parts are joined.
"""

from __future__ import annotations

import uuid

import msgspec

# Fixed forever: changing it would give every existing row a second id.
NAMESPACE = uuid.UUID("5d1c3a0e-7c4b-4e52-9a43-1a6f2b8e9d70")
_encode = msgspec.json.encode


def row_id(kind: str, *parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, _encode([kind, *parts]).decode()))


def checkpoint_id(thread_id: str, checkpoint_ns: str, checkpoint: str) -> str:
    return row_id("checkpoint", thread_id, checkpoint_ns, checkpoint)


def blob_id(thread_id: str, checkpoint_ns: str, channel: str, version: str) -> str:
    return row_id("blob", thread_id, checkpoint_ns, channel, version)


def write_id(thread_id: str, checkpoint_ns: str, checkpoint: str, task_id: str, idx: int) -> str:
    return row_id("write", thread_id, checkpoint_ns, checkpoint, task_id, str(idx))


def item_id(namespace: str, key: str) -> str:
    """A store item: ``namespace`` is the JSON array text of its labels."""
    return row_id("item", namespace, key)
