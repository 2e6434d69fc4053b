"""Differential test: a random workload through the store and through plain SQL on a
plain SQLite table leaves the same visible rows; and the change log, replayed on an
empty replica, rebuilds them too."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from hypothesis import given
from hypothesis import strategies as st

import syncstore
from syncstore import schema
from syncstore.core.merge import Cell
from syncstore.errors import NotFoundError, ValidationError
from syncstore.replica.store import RemoteChange

TASKS = schema.TABLES["tasks"]
IDS = [f"01a215e4-e4c7-7804-a2c7-00000000000{n}" for n in range(5)]
SQL_TYPES = {"text": "TEXT", "integer": "INTEGER", "boolean": "INTEGER", "json": "TEXT", "timestamp": "TEXT"}

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
FIELDS = {
    "title": TEXT.filter(str.strip),
    "description": TEXT,
    "status": st.sampled_from(schema.TASK_STATUSES),
    "priority": st.sampled_from(schema.TASK_PRIORITIES),
    "repository": st.sampled_from(["", "octo/app", "octo/lib"]),
    "is_archived": st.booleans(),
    "user_id": st.one_of(st.none(), st.sampled_from(["ann", "bob"])),
    "metadata": st.dictionaries(st.sampled_from(["a", "b", "source"]), st.integers(-5, 5), max_size=2),
}


def values(required=()):
    optional = st.fixed_dictionaries({}, optional={k: v for k, v in FIELDS.items() if k not in required})
    fixed = st.fixed_dictionaries({k: FIELDS[k] for k in required})
    return st.tuples(fixed, optional).map(lambda parts: {**parts[0], **parts[1]})


KEYS = st.integers(0, len(IDS) - 1)
WRITE = st.one_of(
    st.tuples(st.just("insert"), KEYS, values(required=("title",))),
    st.tuples(st.just("update"), KEYS, values().filter(bool)),
    st.tuples(st.just("delete"), KEYS),
)
OPS = st.recursive(
    WRITE,
    lambda inner: st.tuples(st.just("tx"), st.lists(inner, max_size=4), st.booleans()),
    max_leaves=12,
)
WORKLOAD = st.lists(st.one_of(OPS, st.just(("reopen",))), max_size=15)


class Abort(Exception):
    pass


class Clock:
    """Canonical timestamps that move on by one microsecond per write."""

    def __init__(self):
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"2025-07-17T10:00:{self.n // 1_000_000:02d}.{self.n % 1_000_000:06d}Z"


def plain_table(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    defs = []
    for col in TASKS.columns:
        sql = f"{col.name} {SQL_TYPES[col.type]}"
        if col.name == "id":
            sql += " PRIMARY KEY NOT NULL"
        elif col.default is not None:
            sql += f" DEFAULT {col.default!r}" if isinstance(col.default, str) else f" DEFAULT {col.default}"
        defs.append(sql)
    conn.execute(f"create table tasks ({', '.join(defs)})")
    return conn


def to_plain(value):
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return value


def run_store(store, ops, clock):
    for op in ops:
        kind = op[0]
        if kind == "tx":
            try:
                with store.transaction():
                    run_store(store, op[1], clock)
                    if not op[2]:
                        raise Abort
            except Abort:
                pass
        elif kind == "insert":
            now = clock()
            row = {"id": IDS[op[1]], **op[2], "created_at": now, "updated_at": now}
            try:
                store.insert("tasks", row)
            except ValidationError as exc:
                assert "already exists" in str(exc)
        elif kind == "update":
            try:
                store.update("tasks", IDS[op[1]], {**op[2], "updated_at": clock()})
            except NotFoundError:
                pass
        elif kind == "delete":
            clock()
            try:
                store.delete("tasks", IDS[op[1]])
            except NotFoundError:
                pass
    return store


def run_plain(conn, ops, clock, depth=0):
    for op in ops:
        kind = op[0]
        if kind == "tx":
            name = f"sp{depth}"
            conn.execute(f"savepoint {name}")
            run_plain(conn, op[1], clock, depth + 1)
            if not op[2]:
                conn.execute(f"rollback to {name}")
            conn.execute(f"release {name}")
        elif kind == "insert":
            now = clock()
            row = {"id": IDS[op[1]], **op[2], "created_at": now, "updated_at": now}
            names = ", ".join(row)
            try:
                conn.execute(f"insert into tasks ({names}) values ({', '.join('?' * len(row))})",
                             [to_plain(v) for v in row.values()])
            except sqlite3.IntegrityError:
                pass
        elif kind == "update":
            changes = {**op[2], "updated_at": clock()}
            sets = ", ".join(f"{k} = ?" for k in changes)
            conn.execute(f"update tasks set {sets} where id = ?", [*map(to_plain, changes.values()), IDS[op[1]]])
        elif kind == "delete":
            clock()
            conn.execute("delete from tasks where id = ?", (IDS[op[1]],))


def replay(entries, site):
    """The log as another replica receives it: each entry's cells at its stamp."""
    return [
        RemoteChange(e.table, e.id, {k: Cell(v, e.hlc, site) for k, v in e.values.items() if k != "id"})
        for e in entries
    ]


@pytest.fixture(scope="module")
def blank(tmp_path_factory):
    path = tmp_path_factory.mktemp("blank") / "blank.db"
    syncstore.open(str(path)).close()
    return path


@given(WORKLOAD)
def test_store_and_plain_sqlite_agree(blank, tmp_path_factory, workload):
    folder = tmp_path_factory.mktemp("diff")
    path = str(folder / "store.db")
    shutil.copy(blank, path)
    conn = plain_table(str(folder / "plain.db"))
    store_clock, plain_clock = Clock(), Clock()
    store = syncstore.open(path)
    try:
        for op in workload:
            if op[0] == "reopen":
                store.close()
                store = syncstore.open(path)
                continue
            run_store(store, [op], store_clock)
            run_plain(conn, [op], plain_clock)
        conn.row_factory = sqlite3.Row
        plain_rows = [dict(r) for r in conn.execute("select * from tasks order by id")]
        assert store.rows("tasks", order_by="id") == plain_rows

        # The log holds every committed write: replayed on an empty replica it
        # rebuilds the same rows.
        other_path = str(folder / "other.db")
        shutil.copy(blank, other_path)
        with syncstore.open(other_path) as other:
            other.apply_remote(replay(store.changes(), store.site_id))
            assert other.rows("tasks", order_by="id") == plain_rows
    finally:
        store.close()
        conn.close()
