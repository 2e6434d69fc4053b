"""Search over tasks by their title and description (``store.tasks.search``).

Tasks carry no embedding column: their vectors are computed here, kept in
memory, and recomputed only for tasks whose text changed. The cache learns of
changes from the store's notifications (local writes and synced changes) and,
for writes by other processes on the same file, from SQLite's
``data_version``; either one makes the next search re-read titles and
descriptions and embed the texts it has not seen. The search is exact: the
filters select tasks first, then every selected task is scored by cosine
similarity.
"""

from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING, Iterable

import msgspec
import numpy as np

from syncstore import records, schema
from syncstore.memory.embedders import Embedder
from syncstore.shared.memory.filters import check_k
from syncstore.shared.memory.ranking import top_k

if TYPE_CHECKING:
    from syncstore.replica.store import Change
    from syncstore.store import Store


class TaskHit(msgspec.Struct, frozen=True, kw_only=True):
    task: records.Task
    score: float


def task_text(title: str | None, description: str | None) -> str:
    return f"{title or ''}\n{description or ''}".strip()


class TaskSearch:
    def __init__(self, store: Store, *, embedder: Embedder):
        self.store = store
        self.embedder = embedder
        self._lock = threading.Lock()
        self._digest: dict[str, bytes] = {}  # task id -> digest of the text embedded
        self._vectors: dict[str, np.ndarray] = {}
        self._stale = True
        self._data_version: int | None = None
        self._unsubscribe = store.subscribe("tasks", self._on_change)

    def close(self) -> None:
        self._unsubscribe()

    def _on_change(self, changes: list[Change]) -> None:
        self._stale = True

    def _catch_up(self) -> None:
        conn = self.store.connection
        version = conn.execute("pragma data_version").fetchone()[0]
        if not self._stale and version == self._data_version:
            return
        # Texts read inside an open write transaction may roll back (and a
        # rollback notifies nobody): read them again next time.
        self._stale = conn.in_transaction
        self._data_version = version
        live: set[str] = set()
        todo: list[tuple[str, bytes, str]] = []
        for task_id, title, description in conn.execute("select id, title, description from tasks"):
            live.add(task_id)
            text = task_text(title, description)
            digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
            if self._digest.get(task_id) != digest:
                todo.append((task_id, digest, text))
        for task_id in set(self._digest) - live:
            del self._digest[task_id]
            del self._vectors[task_id]
        if todo:
            vectors = self.embedder.embed([text for _, _, text in todo])
            for (task_id, digest, _), vector in zip(todo, vectors):
                self._digest[task_id] = digest
                self._vectors[task_id] = np.asarray(vector, dtype=np.float32)

    def search(
        self,
        text: str,
        *,
        k: int = 10,
        status: str | Iterable[str] | None = None,
        repository: str | None = None,
        include_archived: bool = False,
    ) -> list[TaskHit]:
        """The ``k`` tasks whose title and description are closest to ``text``."""
        check_k(k)
        clauses, params = [], []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            for value in statuses:
                schema.to_storage(schema.table("tasks").column("status"), value, table_name="tasks")
            clauses.append(f"status in ({', '.join('?' * len(statuses))})")
            params.extend(statuses)
        if repository is not None:
            clauses.append("repository = ?")
            params.append(repository)
        if not include_archived:
            clauses.append("is_archived = 0")
        query = self.embedder.embed([text])[0]
        with self._lock:
            self._catch_up()
            sql = "select id from tasks" + (" where " + " and ".join(clauses) if clauses else "")
            ids = [row[0] for row in self.store.connection.execute(sql, params) if row[0] in self._vectors]
            if not ids or k == 0:
                return []
            matrix = np.vstack([self._vectors[i] for i in ids])
        scores = (matrix @ query).astype(np.float64)
        best = top_k(scores, ids, k)
        out = []
        for position in best:
            task = self.store.tasks.find(ids[position])
            if task is not None:
                out.append(TaskHit(task=task, score=float(scores[position])))
        return out
