"""What a search or a listing may return: the filters, checked once, usable by every engine.

A memory passes when it belongs to ``agent_id`` (any agent when None), is of
one of ``memory_types`` (any when None), carries every tag in ``tags``, has
importance of at least ``min_importance``, is active (unless
``include_inactive``) and has not expired at ``now`` (unless
``include_expired``): ``expires_at`` is empty or later than ``now``.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Iterable

import msgspec

from syncstore import schema
from syncstore.errors import ValidationError

NO_EXPIRY = math.inf


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
    def make(
        cls,
        *,
        agent_id: str | None = None,
        memory_type: str | Iterable[str] | None = None,
        tags: Iterable[str] | None = None,
        min_importance: int | None = None,
        include_inactive: bool = False,
        include_expired: bool = False,
        now: dt.datetime | None = None,
    ) -> Filters:
        """Validate the filters a caller gave; ``now`` defaults to the current time."""
        types: tuple[str, ...] | None = None
        if memory_type is not None:
            types = (memory_type,) if isinstance(memory_type, str) else tuple(dict.fromkeys(memory_type))
            for name in types:
                if name not in schema.MEMORY_TYPES:
                    raise ValidationError(
                        f"{name!r} is not one of {', '.join(schema.MEMORY_TYPES)}", table="agent_memory", field="memory_type"
                    )
        if isinstance(tags, str):
            tags = [tags]
        tag_tuple = tuple(dict.fromkeys(tags or ()))
        if any(not isinstance(tag, str) for tag in tag_tuple):
            raise ValidationError("tags must be text", table="agent_memory", field="tags")
        if min_importance is not None and (isinstance(min_importance, bool) or not isinstance(min_importance, int)):
            raise ValidationError("min_importance must be an integer", table="agent_memory", field="importance")
        when = now or dt.datetime.now(dt.timezone.utc)
        if when.tzinfo is None:
            raise ValidationError("now must carry a timezone", table="agent_memory")
        return cls(
            agent_id=agent_id,
            memory_types=types,
            tags=tag_tuple,
            min_importance=min_importance,
            include_inactive=include_inactive,
            include_expired=include_expired,
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
