"""The search engines and how one is chosen.

Each indexes one vector space (embedding model and dimensions), applies
filters before ranking (so no shortfall), and stays in step through the
memory feed. numpy and sqlite-vec search exactly; hnsw approximately.

- ``numpy``: every vector in memory; one matrix-vector product per search,
  the fastest exact search here. Costs ``rows * dimensions * 4`` bytes of RAM
  and a load on first use.
- ``sqlite-vec``: vectors in a vec0 table in a sidecar file; little RAM, no
  load, slower scans (sqlite-vec computes distances without SIMD).

- ``hnsw``: an HNSW graph (faiss, the ``vectors`` extra) beside the replica;
  about a millisecond at a million rows, approximate (see
  :mod:`.hnsw_engine`), exact whenever the filters leave few rows.

``auto`` takes hnsw from ``approximate_above`` rows (where faiss is
installed), numpy below it, either while the vectors fit the memory budget,
and sqlite-vec beyond it (numpy anyway where sqlite-vec is not loaded or the
replica is read-only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from syncstore.errors import ValidationError

if TYPE_CHECKING:
    import numpy as np

    from syncstore.shared.memory.filters import Filters
    from syncstore.shared.memory.ranking import Ranking

ENGINES = ("auto", "numpy", "sqlite-vec", "hnsw")
DEFAULT_MEMORY_BUDGET = 2 * 1024**3  # bytes of vectors held in RAM before auto picks sqlite-vec
# Rows of one vector space from which auto searches approximately: below it an
# exact numpy search takes a few milliseconds (measured: benchmarks/vector_search.py).
APPROXIMATE_ABOVE = 200_000
STORAGES = ("float32", "float16", "int8")


class Index(Protocol):
    """One engine's index of one vector space (embedding model and dimensions)."""

    name: str

    @property
    def size(self) -> int:
        """Rows held."""

    def refresh(self) -> int:
        """Apply the memory feed since the last refresh."""

    def search(self, query: np.ndarray, filters: Filters, ranking: Ranking, k: int) -> list[tuple[str, float, float]]:
        """``[(memory_id, score, similarity)]``, best first: the exact top ``k``."""

    def touch(self, memory_ids: list[str], when: float) -> None:
        """These memories were just read (recency)."""


def choose(
    name: str,
    *,
    rows: int,
    dimensions: int,
    vector_available: bool,
    readonly: bool,
    budget: int,
    approximate_above: int = APPROXIMATE_ABOVE,
    hnsw_available: bool = False,
) -> str:
    """The engine to use for a vector space of ``rows`` vectors."""
    if name not in ENGINES:
        raise ValidationError(f"engine must be one of {', '.join(ENGINES)}, not {name!r}")
    if name != "auto":
        return name
    fits = rows * dimensions * 4 <= budget
    if fits and hnsw_available and rows >= approximate_above:
        return "hnsw"
    return "numpy" if fits or not vector_available or readonly else "sqlite-vec"
