"""The one interface every embedder implements, and the vector helpers they share.

An embedder turns texts into vectors. Its ``model`` names the vector space:
it is recorded on every row it embeds (``embedding_model``), and a search only
ever compares vectors of the query's model, because vectors of two models
(or of one hashing scheme with two settings) are not comparable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

import numpy as np


class Embedder(ABC):
    """Texts in, one float32 row per text out, each of unit length (or all zeros
    for a text with nothing to embed)."""

    #: The name of the vector space, recorded per row; unique per model and setting.
    model: str
    #: The vector length; ``None`` only until an HTTP embedder's first answer.
    dimensions: int | None

    @abstractmethod
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """An array of shape ``(len(texts), dimensions)``, dtype float32."""

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, dimensions={self.dimensions})"


def normalize_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero (no direction to keep)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim == 1:
        return normalize_rows(vectors[None, :])[0]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out = np.zeros_like(vectors)
    np.divide(vectors, norms, out=out, where=norms > 0)
    return out
