"""Tasks and their messages (the chat log is rows in ``task_messages``)."""

from __future__ import annotations

from typing import Any

from syncstore._crud import TableAPI
from syncstore.errors import NotFoundError, ValidationError
from syncstore.records import Task, TaskMessage


class Tasks(TableAPI[Task]):
    table = "tasks"
    record = Task

    def create(
        self,
        title: str,
        *,
        description: str = "",
        status: str = "pending",
        priority: str = "medium",
        repository: str = "",
        branch: str = "",
        mode: str = "code",
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        id: str | None = None,
        **other: Any,
    ) -> Task:
        if isinstance(title, str) and not title.strip():
            raise ValidationError("must not be empty", table=self.table, field="title")
        return self._create(
            dict(
                id=id,
                title=title,
                description=description,
                status=status,
                priority=priority,
                repository=repository,
                branch=branch,
                mode=mode,
                user_id=user_id,
                metadata=metadata,
                **other,
            )
        )

    def archive(self, task_id: str) -> Task:
        return self.update(task_id, is_archived=True)

    def search(self, text: str, *, k: int = 10, **filters: Any) -> list[Any]:
        """Tasks whose title and description are closest to ``text``, best first, with
        ``store.memory``'s embedder; filters: ``status``, ``repository``, ``include_archived``."""
        return self.store.memory.task_search.search(text, k=k, **filters)


class Messages(TableAPI[TaskMessage]):
    """Append-only chat log of a task: concurrent appends never conflict."""

    table = "task_messages"
    record = TaskMessage

    def add(self, task_id: str, role: str, content: str = "", *, type: str = "message", data: dict[str, Any] | None = None) -> TaskMessage:
        with self.store.transaction():
            if self.store.get("tasks", task_id) is None:
                raise NotFoundError("tasks", task_id)
            (found,) = self.store.query(
                "select coalesce(max(position) + 1, 0) as position from task_messages where task_id = ?", (task_id,)
            )
            position = found["position"]
            return self._create(dict(task_id=task_id, position=position, role=role, type=type, content=content, data=data))

    def for_task(self, task_id: str) -> list[TaskMessage]:
        """A task's messages in order. Positions from two offline writers can tie;
        the tie is broken by id, the same on every replica."""
        rows = self.store.query(
            "select * from task_messages where task_id = ? order by position, created_at, id", (task_id,)
        )
        return [self._record(row) for row in rows]

    def update(self, row_id: str, **changes: Any) -> TaskMessage:  # pragma: no cover - guard
        raise ValidationError("messages are append-only", table=self.table)

    def delete(self, row_id: str) -> None:  # pragma: no cover - guard
        raise ValidationError("messages are append-only", table=self.table)
