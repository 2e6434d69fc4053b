"""Environments: where an agent works (GitHub organisation, repository, config)."""

from __future__ import annotations

from typing import Any

from syncstore._crud import TableAPI
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
        return self._create(
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

    def activate(self, env_id: str) -> Environment:
        """Make this the one active environment of its owner, atomically."""
        with self.store.transaction():
            env = self.get(env_id)
            others = self.store.query(
                "select id from environments where user_id is ? and is_active = 1 and id != ?",
                (env.user_id, env_id),
            )
            for row in others:
                self.store.update(self.table, row["id"], {"is_active": False})
            if not env.is_active:
                self.store.update(self.table, env_id, {"is_active": True})
        return self.get(env_id)

    def deactivate(self, env_id: str) -> Environment:
        return self.update(env_id, is_active=False)

    def active(self, *, user_id: str | None = None) -> Environment | None:
        rows = self.store.query(
            "select * from environments where user_id is ? and is_active = 1 order by updated_at desc limit 1",
            (user_id,),
        )
        return self._record(rows[0]) if rows else None

