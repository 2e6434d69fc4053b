"""Semantic search of the LangGraph store: what is embedded, with what, and scoring.

The embedder is any syncstore :class:`~syncstore.memory.Embedder` (the
default, with no ``embed`` in the index config, is the offline
:class:`~syncstore.memory.HashingEmbedder`), or what LangGraph accepts: a
LangChain ``Embeddings``, an embedding function, or a provider string.

An item is embedded once per text its index fields give (LangGraph's field
paths: ``"text"``, ``"a.b"``, ``"items[*].text"``, ``"$"`` for the whole
value). The unit-length float32 rows are kept in the item's row
(``embeddings``, with ``embedding_fields`` naming each row and
``embedding_model`` the vector space), so they sync with it and a replica
searches what another replica embedded without embedding it again.

A search scores an item by its best row: the cosine similarity with the
query, one matrix product over the candidate rows, exact (as syncstore's
numpy memory engine does). Items embedded in another vector space, or not at
all, have no score.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping, Sequence

import numpy as np
from langgraph.store.base import IndexConfig, ensure_embeddings, get_text_at_path, tokenize_path

from syncstore.errors import ValidationError
from syncstore.memory.embedders import Embedder, HashingEmbedder, normalize_rows


class Vectors:
    """The store's index configuration: its embedder, its fields, its vector space."""

    def __init__(self, index: IndexConfig, *, embedding_model: str | None = None):
        config = dict(index)
        embed = config.get("embed")
        dims = config.get("dims")
        if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
            raise ValidationError(f"index dims must be a positive whole number, not {dims!r}")
        self._embedder: Embedder | None = None
        self._langchain: Any = None
        if embed is None or isinstance(embed, Embedder):
            self._embedder = embed or HashingEmbedder(dimensions=dims or 512)
            dims = dims or self._embedder.dimensions
            model = embedding_model or self._embedder.model
        else:
            if dims is None:
                raise ValidationError("index needs 'dims' (the length of the embedder's vectors)")
            self._langchain = ensure_embeddings(embed)
            if embedding_model:
                model = embedding_model
            elif isinstance(embed, str):
                model = f"{embed}:d{dims}"
            else:  # the class of an Embeddings, or the function given
                named = embed if callable(embed) and not hasattr(embed, "embed_documents") else type(embed)
                model = f"{named.__module__}.{named.__qualname__}:d{dims}"
        if not dims:
            raise ValidationError("index needs 'dims' (the length of the embedder's vectors)")
        self.dims: int = dims
        self.model: str = model
        self.config: dict[str, Any] = {**config, "dims": dims, "embed": embed if embed is not None else self._embedder}
        fields = config.get("fields") or ["$"]
        self.fields = [(path, path if path == "$" else tokenize_path(path)) for path in fields]

    # --- what an item embeds ----------------------------------------------------

    def texts(self, value: Mapping[str, Any], index: Sequence[str] | None) -> list[tuple[str, str]]:
        """``[(field label, text)]`` for an item: the store's fields, or ``index``'s."""
        paths = self.fields if index is None else [(p, p if p == "$" else tokenize_path(p)) for p in index]
        out = []
        for path, tokens in paths:
            found = get_text_at_path(value, tokens)
            if len(found) == 1:
                out.append((path, found[0]))
            else:  # each element of a list path is a row of its own
                out.extend((f"{path}.{i}", text) for i, text in enumerate(found))
        return out

    # --- embedding ----------------------------------------------------------------

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        if self._embedder is not None:
            return self._rows(self._embedder.embed(texts), len(texts))
        return self._rows(self._langchain.embed_documents(texts), len(texts))

    async def aembed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        if self._embedder is not None:
            return self._rows(await asyncio.to_thread(self._embedder.embed, texts), len(texts))
        return self._rows(await self._langchain.aembed_documents(texts), len(texts))

    def embed_query(self, text: str) -> np.ndarray:
        if self._embedder is not None:
            return self._rows(self._embedder.embed([text]), 1)[0]
        return self._rows([self._langchain.embed_query(text)], 1)[0]

    async def aembed_query(self, text: str) -> np.ndarray:
        if self._embedder is not None:
            return self._rows(await asyncio.to_thread(self._embedder.embed, [text]), 1)[0]
        return self._rows([await self._langchain.aembed_query(text)], 1)[0]

    def _rows(self, vectors: Any, count: int) -> np.ndarray:
        try:
            rows = np.asarray(vectors, dtype=np.float32)
        except (TypeError, ValueError):
            raise ValidationError("the embedder returned something that is not a list of vectors") from None
        if rows.shape != (count, self.dims):
            raise ValidationError(f"the embedder returned vectors of shape {rows.shape}; expected ({count}, {self.dims})")
        if not np.isfinite(rows).all():
            raise ValidationError("the embedder returned a vector with a non-finite component")
        return normalize_rows(rows)

    # --- stored rows and scores -------------------------------------------------

    @staticmethod
    def encode(rows: np.ndarray) -> bytes:
        return np.ascontiguousarray(rows, dtype=np.float32).tobytes()

    def decode(self, blob: bytes) -> np.ndarray | None:
        """The stored rows of an item, or None when they are not of this vector space's shape."""
        if not blob or len(blob) % (4 * self.dims):
            return None
        return np.frombuffer(blob, dtype=np.float32).reshape(-1, self.dims)

    def best_scores(self, query: np.ndarray, items: list[np.ndarray]) -> np.ndarray:
        """Each item's best cosine similarity with the query (rows are unit length)."""
        if not items:
            return np.zeros(0)
        counts = np.fromiter((len(rows) for rows in items), dtype=np.int64, count=len(items))
        similarity = np.concatenate(items) @ query
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        return np.maximum.reduceat(similarity, starts).astype(np.float64)
