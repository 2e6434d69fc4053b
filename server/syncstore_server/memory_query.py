"""The memory search request: a URL query string, checked whole before anything runs.

``GET /v1/memory/search?query=deploy+to+staging&agent_id=planner&k=5``

websockets answers plain HTTP before its handshake and reads no request body,
so a search is a GET whose parameters are all in the query string:

- ``query``: text, embedded by the server (only for the hashing models, which
  need no weights: ``syncstore-hashing-v1:...``), or
- ``vector``: the query vector, little-endian float32 bytes in URL-safe
  base64 (padding optional), made with ``model``; exactly one of the two;
- ``model``: the embedding model; for ``query`` it defaults to the library's
  default embedder (:class:`HashingEmbedder` with its defaults);
- ``k`` (default 10, at most ``max_k``), ``agent_id``, ``memory_type`` and
  ``tag`` (both repeatable), ``min_importance``, ``include_expired``,
  ``include_inactive`` (``true``/``false``): the filters of local search,
  checked by the same :meth:`Filters.make`; ``ranking`` (``default`` or
  ``similarity``), ``exact`` (``true``: score every matching row even where
  an HNSW index exists).

Anything else (a ``tenant``, a ``token``, a typo) is refused, naming the
parameter but never echoing its value: the tenant comes from the bearer token
alone, and a token must never travel in a URL, where logs keep it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl

import msgspec
import numpy as np

from syncstore.errors import ValidationError
from syncstore.shared.embedders import HashingEmbedder
from syncstore.shared.memory.filters import Filters
from syncstore.shared.memory.ranking import Ranking

DEFAULT_K = 10
DEFAULT_MAX_K = 100
MAX_DIMENSIONS = 16_000  # pgvector's limit for a vector
MAX_TEXT = 4_000  # characters of query text
_SINGLE = frozenset(
    ("query", "vector", "model", "k", "agent_id", "min_importance")
    + ("include_expired", "include_inactive", "ranking", "exact")
)
_REPEATED = frozenset(("memory_type", "tag"))
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class SearchRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A checked search: ``text`` or ``vector`` (never both), and everything
    :func:`syncstore.shared.memory.server_search.search_filtered` takes besides."""

    text: str | None
    vector: Any  # np.ndarray (float32) when the caller sent one
    model: str
    k: int
    filters: Filters  # its ``now`` is when the request was read: the server's clock decides expiry
    ranking: Ranking
    exact: bool = False


def _bad(field: str, message: str) -> ValidationError:
    return ValidationError(message, field=field)


def _flag(name: str, value: str) -> bool:
    found = _BOOLEANS.get(value.lower())
    if found is None:
        raise _bad(name, "must be true or false")
    return found


def _integer(name: str, value: str, *, low: int, high: int) -> int:
    if not value.lstrip("-").isdigit() or len(value) > 12:
        raise _bad(name, "must be an integer")
    number = int(value)
    if not low <= number <= high:
        raise _bad(name, f"must be between {low} and {high}")
    return number


def decode_vector(text: str) -> np.ndarray:
    """A query vector from URL-safe base64 of little-endian float32 bytes."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _bad("vector", "must be URL-safe base64 of little-endian float32 values") from None
    if not raw or len(raw) % 4:
        raise _bad("vector", "must hold a whole number of float32 values (4 bytes each), at least one")
    vector = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    if vector.size > MAX_DIMENSIONS:
        raise _bad("vector", f"has {vector.size} dimensions; at most {MAX_DIMENSIONS}")
    if not np.isfinite(vector).all():
        raise _bad("vector", "holds a value that is not finite")
    if not np.any(vector):
        raise _bad("vector", "is all zeros: it has no direction to compare")
    return vector


def parse_search(query_string: str, *, max_k: int = DEFAULT_MAX_K) -> SearchRequest:
    """Check a search's query string; raise ValidationError naming the parameter."""
    try:
        pairs = parse_qsl(query_string, keep_blank_values=True, strict_parsing=bool(query_string), errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise _bad("query string", "is not a well-formed URL query (name=value pairs joined by &, UTF-8)") from None
    single: dict[str, str] = {}
    repeated: dict[str, list[str]] = {name: [] for name in _REPEATED}
    for name, value in pairs:
        if name in _REPEATED:
            repeated[name].append(value)
        elif name in _SINGLE:
            if name in single:
                raise _bad(name, "is given more than once")
            single[name] = value
        else:
            shown = name if len(name) <= 40 and name.isprintable() else name[:40].encode("unicode_escape").decode()
            raise _bad(shown, f"is not a search parameter; the parameters are {', '.join(sorted(_SINGLE | _REPEATED))}")
        if "\x00" in value:
            raise _bad(name, "may not contain a NUL character")
        if value == "" and name != "query":
            raise _bad(name, "is empty")

    text = single.get("query")
    encoded = single.get("vector")
    if (text is None) == (encoded is None):
        raise _bad("query", "give exactly one of query (text) and vector")
    vector = None
    if text is not None:
        text = text.strip()
        if not text:
            raise _bad("query", "is empty")
        if len(text) > MAX_TEXT:
            raise _bad("query", f"is longer than {MAX_TEXT} characters")
    else:
        vector = decode_vector(encoded or "")

    model = single.get("model")
    if model is None:
        if vector is not None:
            raise _bad("model", "is required with a vector: the model the vector was made with")
        model = HashingEmbedder().model
    elif len(model) > 200:
        raise _bad("model", "is longer than 200 characters")

    return SearchRequest(
        text=text,
        vector=vector,
        model=model,
        k=_integer("k", single["k"], low=0, high=max_k) if "k" in single else min(DEFAULT_K, max_k),
        filters=Filters.make(
            agent_id=single.get("agent_id"),
            memory_type=repeated["memory_type"] or None,
            tags=repeated["tag"],
            min_importance=_integer("min_importance", single["min_importance"], low=-(2**62), high=2**62)
            if "min_importance" in single
            else None,
            include_expired=_flag("include_expired", single.get("include_expired", "false")),
            include_inactive=_flag("include_inactive", single.get("include_inactive", "false")),
        ),
        ranking=Ranking.named(single.get("ranking", "default")),
        exact=_flag("exact", single.get("exact", "false")),
    )


def embed_text(request: SearchRequest) -> np.ndarray:
    """The query vector: the caller's, or the text embedded by the model it names."""
    if request.vector is not None:
        return request.vector
    embedder = HashingEmbedder.from_model(request.model)
    if embedder is None:
        raise _bad(
            "model",
            "the server embeds text only for the hashing models (syncstore-hashing-v1:...); "
            "for another model, embed the query yourself and send it as vector",
        )
    assert request.text is not None
    return embedder.embed_one(request.text)

