"""The arguments of a search, checked once: the filters, ``k`` and the query vector.

A memory passes the filters when it belongs to ``agent_id`` (any agent when
None), is of one of ``memory_types`` (any when None), carries every tag in
``tags``, has importance of at least ``min_importance``, is active (unless
``include_inactive``) and has not expired at ``now`` (unless
``include_expired``): ``expires_at`` is empty or later than ``now``.

The local API, the server's PostgreSQL search, the HTTP client and the sync
server's request parsing all check filters with :meth:`Filters.make`, so they
accept and refuse the same values, with errors that name the argument.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Iterable, Sequence, TypedDict, Unpack

import msgspec
import numpy as np

from syncstore import schema
from syncstore.errors import ValidationError
from syncstore.shared.embedders.base import normalize_rows

__all__ = ["NO_EXPIRY", "FilterOptions", "Filters", "check_k", "query_vector"]

NO_EXPIRY = math.inf


class FilterOptions(TypedDict, total=False):
    """The filter keywords of every search and listing (``**filters``), all optional;
    :meth:`Filters.make` checks them and gives their defaults."""

    agent_id: str | None
    memory_type: str | Iterable[str] | None
    tags: Iterable[str] | None
    min_importance: int | None
    include_inactive: bool
    include_expired: bool


class Filters(msgspec.Struct, frozen=True, kw_only=True):
    agent_id: str | None = None
    memory_types: tuple[str, ...] | None = None
    tags: tuple[str, ...] = ()
    min_importance: int | None = None
    include_inactive: bool = False
    include_expired: bool = False
    now: float = 0.0  # epoch seconds
    now_iso: str = ""

    @classmethod
    def make(cls, *, now: dt.datetime | None = None, **options: Unpack[FilterOptions]) -> Filters:
        """Check the filters a caller gave; ``now`` (when expiry is judged) defaults to the current time."""
        unknown = options.keys() - FilterOptions.__optional_keys__
        if unknown:
            raise TypeError(f"unexpected keyword argument {', '.join(map(repr, sorted(unknown)))}")
        memory_type = options.get("memory_type")
        types: tuple[str, ...] | None = None
        if memory_type is not None:
            types = (memory_type,) if isinstance(memory_type, str) else tuple(dict.fromkeys(memory_type))
            # The value is not echoed: the server sends this message back to whoever asked.
            if any(name not in schema.MEMORY_TYPES for name in types):
                raise ValidationError(f"must be one of {', '.join(schema.MEMORY_TYPES)}", field="memory_type")
        tags = options.get("tags") or ()
        tags = tuple(dict.fromkeys([tags] if isinstance(tags, str) else tags))
        if any(not isinstance(tag, str) for tag in tags):
            raise ValidationError("must be text", field="tags")
        min_importance = options.get("min_importance")
        if min_importance is not None and (isinstance(min_importance, bool) or not isinstance(min_importance, int)):
            raise ValidationError("must be an integer", field="min_importance")
        when = now or dt.datetime.now(dt.timezone.utc)
        if when.tzinfo is None:
            raise ValidationError("must carry a timezone", field="now")
        return cls(
            agent_id=options.get("agent_id"),
            memory_types=types,
            tags=tags,
            min_importance=min_importance,
            include_inactive=options.get("include_inactive", False),
            include_expired=options.get("include_expired", False),
            now=when.timestamp(),
            now_iso=schema.format_timestamp(when),
        )

    def sql(self, alias: str = "m") -> tuple[list[str], list[Any]]:
        """WHERE clauses and parameters over the local ``agent_memory`` table."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.agent_id is not None:
            clauses.append(f"{alias}.agent_id = ?")
            params.append(self.agent_id)
        if self.memory_types is not None:
            clauses.append(f"{alias}.memory_type in ({', '.join('?' * len(self.memory_types))})")
            params.extend(self.memory_types)
        for tag in self.tags:
            clauses.append(f"exists (select 1 from json_each({alias}.tags) where value = ?)")
            params.append(tag)
        if self.min_importance is not None:
            clauses.append(f"{alias}.importance >= ?")
            params.append(self.min_importance)
        if not self.include_inactive:
            clauses.append(f"{alias}.is_active = 1")
        if not self.include_expired:
            clauses.append(f"({alias}.expires_at is null or {alias}.expires_at > ?)")
            params.append(self.now_iso)
        return clauses, params


def check_k(k: Any) -> None:
    """How many results a search asks for must be an integer, 0 or more."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValidationError("k must be a non-negative integer")


def query_vector(vector: np.ndarray | Sequence[float]) -> np.ndarray:
    """A query vector as float32 of unit length; refused when empty or not finite."""
    raw = np.asarray(vector, dtype=np.float32).reshape(-1)
    if raw.size == 0 or not np.isfinite(raw).all():
        raise ValidationError("the query vector must be non-empty and finite")
    return normalize_rows(raw)
