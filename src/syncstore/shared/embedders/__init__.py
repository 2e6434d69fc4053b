"""The embedder interface (:class:`Embedder`) and the embedder both sides can run:
:class:`HashingEmbedder` (no weights, deterministic everywhere). The client's
other embedders live in :mod:`syncstore.memory.embedders`."""

from syncstore.shared.embedders.base import Embedder, normalize_rows
from syncstore.shared.embedders.hashing import HashingEmbedder

__all__ = ["Embedder", "HashingEmbedder", "normalize_rows"]
