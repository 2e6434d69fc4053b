"""How search results are ordered: similarity, importance and recency in one score.

    score = similarity * cos(query, memory)
          + importance * (memory.importance - 1) / 9
          + recency    * 0.5 ** (age / half_life)

where ``cos`` is the cosine similarity of the two vectors (-1..1), importance
is the memory's 1..10 scaled to 0..1, and ``age`` is the time since the memory
was last touched: the latest of its ``updated_at``, its synced
``last_accessed_at`` and any read counted locally. A memory touched now
scores the full ``recency`` weight, one touched ``half_life`` ago half of it.

The weights are tunable and must not be negative; ``Ranking.SIMILARITY`` ranks
by similarity alone (plain nearest neighbours). The defaults let similarity
lead and use importance and recency to order memories that match about
equally well: with them, a memory one step more important gains about 0.022,
as much as a small difference in wording.

Every engine computes exactly this score over every row that passes the
filters (or proves that the rows it skipped cannot reach the top k), and
orders ties by memory id, so all engines return the same k memories.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import msgspec
import numpy as np

from syncstore.errors import ValidationError

__all__ = ["DAY", "NAMED", "Ranking", "top_k"]

DAY = 86_400.0


class Ranking(msgspec.Struct, frozen=True, kw_only=True):
    similarity: float = 1.0
    importance: float = 0.2
    recency: float = 0.1
    half_life_days: float = 14.0

    SIMILARITY: ClassVar[Ranking]

    def __post_init__(self) -> None:
        if self.similarity <= 0 or self.importance < 0 or self.recency < 0:
            raise ValueError("ranking weights: similarity must be positive, importance and recency not negative")
        if self.half_life_days <= 0:
            raise ValueError("ranking half_life_days must be positive")

    @classmethod
    def named(cls, name: str) -> Ranking:
        """The ranking a search request names: ``default`` or ``similarity``."""
        if name not in NAMED:
            raise ValidationError(f"must be one of {', '.join(NAMED)}", field="ranking")
        return NAMED[name]

    def scores(self, similarity: np.ndarray, importance: np.ndarray, touched: np.ndarray, now: float) -> np.ndarray:
        """The score of each row (float64); ``touched`` and ``now`` in epoch seconds."""
        out = self.similarity * np.asarray(similarity, dtype=np.float64)
        if self.importance:
            out += self.importance * (np.asarray(importance, dtype=np.float64) - 1.0) / 9.0
        if self.recency:
            age = np.maximum(now - np.asarray(touched, dtype=np.float64), 0.0)
            out += self.recency * np.exp2(-age / (self.half_life_days * DAY))
        return out

    def ceiling(self, similarity: float) -> float:
        """The highest score any row whose similarity is at most ``similarity`` can reach."""
        return self.similarity * similarity + self.importance + self.recency


Ranking.SIMILARITY = Ranking(importance=0.0, recency=0.0)
# The rankings a search over HTTP can ask for, by name (a request carries no weights).
NAMED = {"default": Ranking(), "similarity": Ranking.SIMILARITY}


def top_k(scores: np.ndarray, ids: Sequence[str], k: int) -> list[int]:
    """Positions of the ``k`` best scores, best first, ties broken by id (ascending)."""
    count = len(scores)
    if k <= 0 or count == 0:
        return []
    if k < count:
        threshold = np.partition(scores, count - k)[count - k]  # the k-th best
        candidates = np.flatnonzero(scores >= threshold)  # every row tied at the boundary
    else:
        candidates = np.arange(count)
    order = sorted(candidates.tolist(), key=lambda i: (-scores[i], ids[i]))
    return order[:k]
