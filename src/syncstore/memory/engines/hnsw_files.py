"""The HNSW engine's files beside the replica: a graph and what it indexes, saved together.

In ``<replica>-memhnsw/``, per vector space (a short hash of model and
dimensions names it): ``<space>-<token>.faiss``, the graph with its vectors
(faiss's own format), and ``<space>.meta``, which names that token and holds
the rows the graph's labels stand for, their filter columns, and where the
replica's memory feed stood when they were read (the cursor), on which
replica (its site id), in which layout.

Saving writes a new graph file under a new token, then replaces the meta file
in one rename, then removes older graphs: a crash at any point leaves a meta
file that names a complete graph, or none. A meta file that does not match
(another layout, another replica, a cursor ahead of the replica's feed, a
missing or short graph) is a stale index: the engine rebuilds it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from typing import Any

import msgspec

LAYOUT = 1


class Saved(msgspec.Struct, kw_only=True):
    """What the meta file holds (numpy arrays as raw bytes)."""

    layout: int
    model: str
    dimensions: int
    origin: bytes  # the replica's site id
    cursor: int  # the memory feed position the rows were read at
    token: str  # names the graph file
    connectivity: int
    ids: list[str | None]  # per label; None for a label whose row is gone or replaced
    agents: list[str]  # agent codes, in code order
    tags: list[list[str]]  # per label
    columns: dict[str, bytes]  # per-label filter columns


def space_name(model: str, dimensions: int) -> str:
    return hashlib.blake2b(f"{model}\0{dimensions}".encode(), digest_size=8).hexdigest()


def folder_for(replica_path: str) -> str | None:
    """Where a replica's HNSW files go; None for an in-memory replica (nothing is saved)."""
    return None if replica_path in ("", ":memory:") else f"{replica_path}-memhnsw"


def load(folder: str, model: str, dimensions: int) -> tuple[Saved, str] | None:
    """The saved meta and its graph file's path, or None when there is none (or it is unreadable)."""
    space = space_name(model, dimensions)
    try:
        with open(os.path.join(folder, f"{space}.meta"), "rb") as f:
            saved = msgspec.msgpack.decode(f.read(), type=Saved)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    graph = os.path.join(folder, f"{space}-{saved.token}.faiss")
    if saved.layout != LAYOUT or saved.model != model or saved.dimensions != dimensions or not os.path.exists(graph):
        return None
    return saved, graph


def save(folder: str, saved: Saved, write_graph: Any) -> None:
    """Write ``write_graph(path)`` under a new token, then the meta naming it, then drop older graphs."""
    os.makedirs(folder, exist_ok=True)
    space = space_name(saved.model, saved.dimensions)
    saved.token = secrets.token_hex(6)
    graph = os.path.join(folder, f"{space}-{saved.token}.faiss")
    write_graph(graph + ".tmp")
    os.replace(graph + ".tmp", graph)
    meta = os.path.join(folder, f"{space}.meta")
    with open(meta + ".tmp", "wb") as f:
        f.write(msgspec.msgpack.encode(saved))
        f.flush()
        os.fsync(f.fileno())
    os.replace(meta + ".tmp", meta)
    for name in os.listdir(folder):
        if name.startswith(f"{space}-") and name != os.path.basename(graph):
            try:
                os.remove(os.path.join(folder, name))
            except OSError:
                pass
