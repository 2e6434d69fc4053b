"""``SyncstoreSaver``: LangGraph's checkpoints in a syncstore replica.

    store = syncstore.open("agent.db")
    graph = builder.compile(checkpointer=SyncstoreSaver(store))

Checkpoints, channel values and pending writes are rows of three synced
tables (schema.py, replica migration 0012), written with change capture like
every other row, so they sync to PostgreSQL and to the tenant's other
replicas: a thread started on one machine resumes on another, and its state
history (and forks from it) spans both.

Storage follows LangGraph's own savers: a checkpoint row holds the checkpoint
without its channel values; each channel value is stored once per channel
version (``langgraph_checkpoint_blobs``) and shared by every checkpoint that
names that version; pending writes are rows of their own. Row ids are made
from LangGraph's keys (:mod:`.keys`), and channel versions carry a random part
(as InMemorySaver's and PostgresSaver's do), so checkpoints written on two
replicas never share a row: they never conflict.

The async methods run the synchronous ones in the store's worker thread
(:mod:`syncstore.aio.worker`), so the event loop is never blocked.

``prune`` and ``delete_for_runs`` also remove the channel values no remaining
checkpoint of the thread names, as this replica sees the thread: run them
where the thread's checkpoints have synced (a checkpoint another replica
writes meanwhile may name a value removed here).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator, Sequence

import msgspec
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    SerializerProtocol,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)

from syncstore import schema
from syncstore.aio.worker import worker_for
from syncstore.errors import ValidationError
from syncstore.integrations.langgraph import keys

if TYPE_CHECKING:
    from syncstore.aio import AsyncStore
    from syncstore.store import Store

CHECKPOINTS = "langgraph_checkpoints"
BLOBS = "langgraph_checkpoint_blobs"
WRITES = "langgraph_checkpoint_writes"
_PAGE = 100  # checkpoints read per query when listing
_decode_json = msgspec.json.decode
_CHECKPOINT_COLUMNS = "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata"
_STRATEGIES = ("keep_latest", "delete")
_IN_THREAD = "id >= ? and id < ? and thread_id = ?"  # a thread's rows: a range of the primary key


class SyncstoreSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpoint saver on an open syncstore store (or ``syncstore.aio`` store)."""

    def __init__(self, store: Store | AsyncStore, *, serde: SerializerProtocol | None = None):
        super().__init__(serde=serde)
        self.store: Store = getattr(store, "store", store)  # an AsyncStore wraps its Store
        self._worker = worker_for(self.store)

    def setup(self) -> None:
        """Nothing to do: the tables come with the replica's migrations."""

    # --- writing --------------------------------------------------------------

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint and the channel values of ``new_versions``, in one transaction."""
        thread_id, checkpoint_ns = _thread(config)
        body = checkpoint.copy()
        values: dict[str, Any] = body.pop("channel_values", None) or {}  # type: ignore[misc]
        type_, serialized = self.serde.dumps_typed(body)
        meta = get_serializable_checkpoint_metadata(config, metadata)
        run_id = meta.get("run_id")
        row = {
            "id": keys.checkpoint_id(thread_id, checkpoint_ns, checkpoint["id"]),
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint["id"],
            "parent_checkpoint_id": config["configurable"].get("checkpoint_id"),
            "run_id": None if run_id is None else str(run_id),
            "type": type_,
            "checkpoint": serialized,
            "metadata": meta,
            "created_at": schema.now_iso(),
        }
        blobs = []
        for channel, version in new_versions.items():
            blob_type, blob = self.serde.dumps_typed(values[channel]) if channel in values else ("empty", b"")
            blobs.append(
                {
                    "id": keys.blob_id(thread_id, checkpoint_ns, channel, str(version)),
                    "thread_id": thread_id,
                    "checkpoint_ns": checkpoint_ns,
                    "channel": channel,
                    "version": str(version),
                    "type": blob_type,
                    "blob": blob,
                }
            )
        with self.store.transaction():
            # The common case first: a new checkpoint and new versions, inserted.
            if not self._inserted(CHECKPOINTS, [row]):
                self._upsert(CHECKPOINTS, [row])
            # A channel version names one value: a blob already there is that value.
            if blobs and not self._inserted(BLOBS, blobs):
                self._insert_missing(BLOBS, blobs)
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns, "checkpoint_id": checkpoint["id"]}}

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes for a checkpoint. A write already stored under its
        (task, index) stays, except the special ones (errors, interrupts, ...),
        which are replaced, as LangGraph's savers do."""
        thread_id, checkpoint_ns = _thread(config)
        checkpoint = config["configurable"]["checkpoint_id"]
        rows, replace = [], set()
        for idx, (channel, value) in enumerate(writes):
            index = WRITES_IDX_MAP.get(channel, idx)
            type_, blob = self.serde.dumps_typed(value)
            row_id = keys.write_id(thread_id, checkpoint_ns, checkpoint, task_id, index)
            rows.append(
                {
                    "id": row_id,
                    "thread_id": thread_id,
                    "checkpoint_ns": checkpoint_ns,
                    "checkpoint_id": checkpoint,
                    "task_id": task_id,
                    "task_path": task_path,
                    "idx": index,
                    "channel": channel,
                    "type": type_,
                    "blob": blob,
                }
            )
            if index < 0:
                replace.add(row_id)
        if not rows or self._inserted(WRITES, rows):  # the common case: none stored yet
            return
        with self.store.transaction():
            existing = self._existing(WRITES, [row["id"] for row in rows])
            self._insert(WRITES, [row for row in rows if row["id"] not in existing])
            for row in rows:
                if row["id"] in existing and row["id"] in replace:
                    self.store.update(WRITES, row["id"], {k: v for k, v in row.items() if k != "id"})

    def _existing(self, table: str, ids: list[str]) -> set[str]:
        if len(ids) == 1:
            found = self.store.query(f"select id from {table} where id = ?", (ids[0],))
        else:
            found = self.store.query(
                f"select id from {table} where id in (select value from json_each(?))", (schema.encode_json(ids),)
            )
        return {row["id"] for row in found}

    def _inserted(self, table: str, rows: list[dict[str, Any]]) -> bool:
        """Insert the rows; False (and nothing written) when one of them exists."""
        try:
            self.store.insert_many(table, rows)
        except ValidationError as exc:
            if exc.field != "id":
                raise
            return False
        return True

    def _insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.store.insert_many(table, rows)

    def _insert_missing(self, table: str, rows: list[dict[str, Any]]) -> None:
        existing = self._existing(table, [row["id"] for row in rows])
        self._insert(table, [row for row in rows if row["id"] not in existing])

    def _upsert(self, table: str, rows: list[dict[str, Any]]) -> None:
        existing = self._existing(table, [row["id"] for row in rows])
        self._insert(table, [row for row in rows if row["id"] not in existing])
        for row in rows:
            if row["id"] in existing:
                self.store.update(table, row["id"], {k: v for k, v in row.items() if k != "id"})

    # --- reading --------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names, or the thread's latest in its namespace."""
        thread_id, checkpoint_ns = _thread(config)
        wanted = get_checkpoint_id(config)
        if wanted:
            rows = self.store.query(
                f"select {_CHECKPOINT_COLUMNS} from {CHECKPOINTS} where id = ?",
                (keys.checkpoint_id(thread_id, checkpoint_ns, wanted),),
            )
        else:
            rows = self.store.query(
                f"select {_CHECKPOINT_COLUMNS} from {CHECKPOINTS} where thread_id = ? and checkpoint_ns = ? "
                "order by checkpoint_id desc limit 1",
                (thread_id, checkpoint_ns),
            )
        return self._tuple(rows[0]) if rows else None

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first: of one thread (and namespace, and checkpoint,
        when ``config`` names them) or of every thread; those whose metadata has
        every ``filter`` item; before ``before``'s checkpoint; at most ``limit``."""
        query = _ListQuery(config, filter, before, limit)
        while not query.done:
            yield from self._page(query)

    def _page(self, query: _ListQuery) -> list[CheckpointTuple]:
        rows = self.store.query(query.sql, query.params())
        return query.take(rows, self._tuple)

    def _tuple(self, row: dict[str, Any]) -> CheckpointTuple:
        thread_id, checkpoint_ns, checkpoint_id = row["thread_id"], row["checkpoint_ns"], row["checkpoint_id"]
        checkpoint: Checkpoint = self.serde.loads_typed((row["type"], row["checkpoint"]))
        checkpoint = {**checkpoint, "channel_values": self._values(thread_id, checkpoint_ns, checkpoint)}
        writes = self.store.query(
            f"select task_id, channel, type, blob from {WRITES} "
            "where thread_id = ? and checkpoint_ns = ? and checkpoint_id = ? order by task_path, task_id, idx",
            (thread_id, checkpoint_ns, checkpoint_id),
        )
        parent = row["parent_checkpoint_id"]
        return CheckpointTuple(
            config=_config(thread_id, checkpoint_ns, checkpoint_id),
            checkpoint=checkpoint,
            metadata=_decode_json(row["metadata"]) if row["metadata"] else {},
            parent_config=_config(thread_id, checkpoint_ns, parent) if parent else None,
            pending_writes=[(w["task_id"], w["channel"], self.serde.loads_typed((w["type"], w["blob"]))) for w in writes],
        )

    def _values(self, thread_id: str, checkpoint_ns: str, checkpoint: Checkpoint) -> dict[str, Any]:
        versions = checkpoint.get("channel_versions") or {}
        if not versions:
            return {}
        ids = [keys.blob_id(thread_id, checkpoint_ns, channel, str(version)) for channel, version in versions.items()]
        rows = self.store.query(
            f"select channel, type, blob from {BLOBS} where id in (select value from json_each(?))",
            (schema.encode_json(ids),),
        )
        return {row["channel"]: self.serde.loads_typed((row["type"], row["blob"])) for row in rows if row["type"] != "empty"}

    # --- deleting and copying -------------------------------------------------

    def delete_thread(self, thread_id: str) -> None:
        """Delete a thread's checkpoints, channel values and writes (the deletes sync)."""
        thread_id = str(thread_id)
        with self.store.transaction():
            for table in (WRITES, BLOBS, CHECKPOINTS):
                self._delete(table, _IN_THREAD, (*keys.thread_range(thread_id), thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints the given runs made, their writes, and the channel
        values no remaining checkpoint names."""
        runs = [str(run) for run in run_ids]
        if not runs:
            return
        with self.store.transaction():
            doomed = self.store.query(
                f"select thread_id, checkpoint_ns, checkpoint_id from {CHECKPOINTS} "
                "where run_id in (select value from json_each(?))",
                (schema.encode_json(runs),),
            )
            self._delete_checkpoints(doomed)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, channel value and write of one thread to another
        (rows the target already has under the same key are replaced)."""
        source, target = str(source_thread_id), str(target_thread_id)
        if source == target:
            return
        with self.store.transaction():
            for table, make_id in (
                (BLOBS, lambda r: keys.blob_id(target, r["checkpoint_ns"], r["channel"], r["version"])),
                (CHECKPOINTS, lambda r: keys.checkpoint_id(target, r["checkpoint_ns"], r["checkpoint_id"])),
                (WRITES, lambda r: keys.write_id(target, r["checkpoint_ns"], r["checkpoint_id"], r["task_id"], r["idx"])),
            ):
                names = schema.table(table).column_names
                rows = self.store.query(
                    f"select {', '.join(names)} from {table} where {_IN_THREAD}", (*keys.thread_range(source), source)
                )
                copies = []
                for row in rows:
                    row = dict(row, thread_id=target)
                    row["id"] = make_id(row)
                    if "created_at" in row:
                        row["created_at"] = schema.now_iso()
                    copies.append(row)
                if copies:
                    self._upsert(table, copies)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``"keep_latest"``: keep each thread's latest checkpoint per namespace (with
        its writes and values); ``"delete"``: delete the threads."""
        if strategy not in _STRATEGIES:
            raise ValidationError(f"strategy must be one of {', '.join(_STRATEGIES)}, not {strategy!r}")
        threads = [str(thread) for thread in thread_ids]
        with self.store.transaction():
            for thread_id in threads:
                if strategy == "delete":
                    self.delete_thread(thread_id)
                    continue
                doomed = self.store.query(
                    f"select thread_id, checkpoint_ns, checkpoint_id from {CHECKPOINTS} c where thread_id = ? "
                    f"and checkpoint_id < (select max(checkpoint_id) from {CHECKPOINTS} "
                    "where thread_id = c.thread_id and checkpoint_ns = c.checkpoint_ns)",
                    (thread_id,),
                )
                self._delete_checkpoints(doomed)

    def _delete(self, table: str, where: str, params: tuple[Any, ...]) -> None:
        for row in self.store.query(f"select id from {table} where {where}", params):
            self.store.delete(table, row["id"])

    def _delete_checkpoints(self, doomed: list[dict[str, Any]]) -> None:
        """Delete these checkpoints and their writes, then the values no checkpoint
        left in their namespaces names (inside the caller's transaction)."""
        touched = set()
        for row in doomed:
            thread_id, checkpoint_ns, checkpoint_id = row["thread_id"], row["checkpoint_ns"], row["checkpoint_id"]
            self.store.delete(CHECKPOINTS, keys.checkpoint_id(thread_id, checkpoint_ns, checkpoint_id))
            self._delete(
                WRITES, "thread_id = ? and checkpoint_ns = ? and checkpoint_id = ?", (thread_id, checkpoint_ns, checkpoint_id)
            )
            touched.add((thread_id, checkpoint_ns))
        for thread_id, checkpoint_ns in touched:
            named = set()
            for row in self.store.query(
                f"select type, checkpoint from {CHECKPOINTS} where thread_id = ? and checkpoint_ns = ?",
                (thread_id, checkpoint_ns),
            ):
                body = self.serde.loads_typed((row["type"], row["checkpoint"]))
                named.update(
                    keys.blob_id(thread_id, checkpoint_ns, channel, str(version))
                    for channel, version in (body.get("channel_versions") or {}).items()
                )
            for row in self.store.query(
                f"select id from {BLOBS} where {_IN_THREAD} and checkpoint_ns = ?",
                (*keys.thread_range(thread_id), thread_id, checkpoint_ns),
            ):
                if row["id"] not in named:
                    self.store.delete(BLOBS, row["id"])

    # --- versions -------------------------------------------------------------

    def get_next_version(self, current: str | None, channel: None) -> str:
        """The next channel version: a counter and a random fraction, so two replicas
        advancing one channel from the same checkpoint make different versions."""
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(current.split(".")[0])
        return f"{number + 1:032}.{random.random():016}"

    # --- async: the same, in the store's worker thread ------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._worker.run(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        query = _ListQuery(config, filter, before, limit)
        while not query.done:
            for item in await self._worker.run(self._page, query):
                yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await self._worker.run(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await self._worker.run(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._worker.run(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._worker.run(self.delete_for_runs, list(run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._worker.run(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._worker.run(self.prune, list(thread_ids), strategy=strategy)


class _ListQuery:
    """One listing: its SQL, and where it has got to (read page by page)."""

    def __init__(
        self,
        config: RunnableConfig | None,
        filter: dict[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ):
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise ValidationError(f"limit must be a whole number, got {limit!r}")
        clauses, params = [], []
        if config is not None:
            configurable = config.get("configurable", {})
            clauses.append("thread_id = ?")
            params.append(str(configurable["thread_id"]))
            if configurable.get("checkpoint_ns") is not None:
                clauses.append("checkpoint_ns = ?")
                params.append(configurable["checkpoint_ns"])
            if get_checkpoint_id(config):
                clauses.append("checkpoint_id = ?")
                params.append(get_checkpoint_id(config))
        if before is not None and get_checkpoint_id(before):
            clauses.append("checkpoint_id < ?")
            params.append(get_checkpoint_id(before))
        where = f" where {' and '.join(clauses)}" if clauses else ""
        self.sql = (
            f"select {_CHECKPOINT_COLUMNS} from {CHECKPOINTS}{where} "
            "order by checkpoint_id desc, thread_id, checkpoint_ns limit ? offset ?"
        )
        self._params = params
        self.filter = dict(filter or {})
        self.left = limit
        self.offset = 0
        self.done = limit is not None and limit <= 0

    def params(self) -> list[Any]:
        return [*self._params, _PAGE, self.offset]

    def take(self, rows: list[dict[str, Any]], make: Any) -> list[CheckpointTuple]:
        """The tuples of one page that pass the filter, up to the limit."""
        self.offset += len(rows)
        if len(rows) < _PAGE:
            self.done = True
        out = []
        for row in rows:
            if self.filter:
                metadata = _decode_json(row["metadata"]) if row["metadata"] else {}
                if not all(metadata.get(k) == v for k, v in self.filter.items()):
                    continue
            out.append(make(row))
            if self.left is not None:
                self.left -= 1
                if self.left <= 0:
                    self.done = True
                    break
        return out


def _thread(config: RunnableConfig) -> tuple[str, str]:
    configurable = config["configurable"]
    return str(configurable["thread_id"]), configurable.get("checkpoint_ns") or ""


def _config(thread_id: str, checkpoint_ns: str, checkpoint_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id, "checkpoint_ns": checkpoint_ns, "checkpoint_id": checkpoint_id}}
