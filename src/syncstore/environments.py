"""Environments: where an agent works (GitHub organisation, repository, config)."""

from __future__ import annotations

from typing import Any

from syncstore._crud import TableAPI
from syncstore.errors import ValidationError
from syncstore.records import Environment


class Environments(TableAPI[Environment]):
    table = "environments"
    record = Environment

    def create(
        self,
        name: str,
        *,
        description: str = "",
        github_organization: str = "",
        github_repository: str = "",
        config: dict[str, Any] | None = None,
        user_id: str | None = None,
        id: str | None = None,
        **other: Any,
    ) -> Environment:
        """Add an environment; ``is_active=True`` makes it its owner's one active environment."""
        if isinstance(name, str) and not name.strip():
            raise ValidationError("must not be empty", table=self.table, field="name")
        with self.store.transaction():
            env = self._create(
                dict(
                    id=id,
                    name=name,
                    description=description,
                    github_organization=github_organization,
                    github_repository=github_repository,
                    config=config,
                    user_id=user_id,
                    **other,
                )
            )
            if env.is_active:
                self._deactivate_others(env)
        return env

    def update(self, row_id: str, **changes: Any) -> Environment:
        """Change some fields. Activating, or moving an active environment to another
        owner, deactivates that owner's other active environment in the same transaction."""
        with self.store.transaction():
            env = super().update(row_id, **changes)
            if env.is_active and ("is_active" in changes or "user_id" in changes):
                self._deactivate_others(env)
        return env

    def activate(self, env_id: str) -> Environment:
        """Make this the one active environment of its owner, atomically."""
        with self.store.transaction():
            env = self.get(env_id)
            self._deactivate_others(env)
            if not env.is_active:
                self.store.update(self.table, env_id, {"is_active": True})
        return self.get(env_id)

    def _deactivate_others(self, env: Environment) -> None:
        others = self.store.query(
            "select id from environments where user_id is ? and is_active = 1 and id != ?",
            (env.user_id, env.id),
        )
        for row in others:
            self.store.update(self.table, row["id"], {"is_active": False})

    def deactivate(self, env_id: str) -> Environment:
        return self.update(env_id, is_active=False)

    def active(self, *, user_id: str | None = None) -> Environment | None:
        """The owner's active environment. Two replicas activating different ones
        offline can both sync as active; the most recently changed one counts."""
        rows = self.store.query(
            "select * from environments where user_id is ? and is_active = 1 order by updated_at desc, id desc limit 1",
            (user_id,),
        )
        return self._record(rows[0]) if rows else None
