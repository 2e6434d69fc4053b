"""Embedders: one interface (:class:`Embedder`), three kinds.

- :class:`HashingEmbedder`: the default; offline, deterministic, lexical
  (defined in :mod:`syncstore.shared.embedders`: the server runs it too).
- :class:`HttpEmbedder`: any OpenAI-compatible ``/embeddings`` endpoint.
- :class:`SentenceTransformerEmbedder`: a real sentence model shipped in a
  wheel (the ``embeddings`` extra); imported lazily, so this package loads
  without it.
"""

from syncstore.memory.embedders.http import HttpEmbedder
from syncstore.memory.embedders.sentence import SentenceTransformerEmbedder
from syncstore.shared.embedders.base import Embedder, normalize_rows
from syncstore.shared.embedders.hashing import HashingEmbedder

__all__ = ["Embedder", "HashingEmbedder", "HttpEmbedder", "SentenceTransformerEmbedder", "normalize_rows"]
