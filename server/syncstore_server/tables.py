"""The SQL for each synced table, built once from :data:`syncstore.schema.TABLES`.

SQL identifiers on the server come only from here (and from the schema
definitions behind it), never from a client. Values cross in canonical stored
form (see :mod:`syncstore.schema`): reading converts PostgreSQL's types back to
it in the query where PostgreSQL can do it exactly (timestamps through
``to_char``, booleans as integers) and in Python where it cannot (``jsonb`` is
re-encoded as compact sorted-key JSON, a ``vector`` becomes float32 bytes).
Writing goes through a per-connection staging table filled by ``COPY``, whose
text input PostgreSQL parses into the real types.
"""

from __future__ import annotations

from itertools import repeat
from typing import Any, Callable, Iterable, NamedTuple

import msgspec
import numpy as np

from syncstore import schema
from syncstore.core.merge import DELETED, Cell

from syncstore_server import clocks
from syncstore_server.merge_plan import Row

SCHEMA = "syncstore"
_TIMESTAMP = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"


def _json_reader(text: str) -> str:
    try:
        return schema.encode_json(msgspec.json.decode(text))
    except (RecursionError, msgspec.DecodeError):
        # A value no replica takes (nested past Python's limit: stored by SQL
        # before migration 0005 held direct writes to the limits). As PostgreSQL
        # prints it, so reading the row never fails a merge, a snapshot or the
        # direct-write publisher; every check downstream refuses the value itself.
        return text


def _vector_reader(values: list[float]) -> bytes:
    return np.asarray(values, dtype=np.float32).tobytes()


def _vector_writer(raw: bytes) -> str:
    return "[" + ",".join(map(repr, np.frombuffer(raw, dtype=np.float32).tolist())) + "]"


class PgTable:
    """One synced table's statements and value conversions.

    A push usually writes a few columns of existing rows, so reads and writes
    of existing rows go through a :class:`View` of just the columns the push
    writes; new rows are written whole.
    """

    def __init__(self, tbl: schema.Table, *, vector_columns: frozenset[str] = frozenset()):
        self.table = tbl
        self.name = tbl.name
        self.qualified = f"{SCHEMA}.{tbl.name}"
        self.columns: tuple[str, ...] = tbl.column_names[1:]  # every column but id
        self.cell_names: tuple[str, ...] = (*self.columns, DELETED)
        self._expr: dict[str, str] = {}
        self._reader: dict[str, Callable[[Any], Any]] = {}
        self._writer: dict[str, Callable[[Any], Any]] = {}
        for col in tbl.columns[1:]:
            expr = col.name
            if col.type == "boolean":
                expr = f"{col.name}::int"
            elif col.type == "timestamp":
                expr = f"to_char({col.name} AT TIME ZONE 'UTC', {_TIMESTAMP})"
            elif col.type == "json":
                expr = f"{col.name}::text"
                self._reader[col.name] = _json_reader
            elif col.type == "vector" and col.name in vector_columns:
                expr = f"{col.name}::real[]"
                self._reader[col.name] = _vector_reader
                self._writer[col.name] = _vector_writer
            self._expr[col.name] = expr
        self.stage = f"_ss_stage_{tbl.name}"
        self.create_stage = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} "
            f"(LIKE {self.qualified}, _group smallint NOT NULL) ON COMMIT DELETE ROWS"
        )
        stored = ", ".join(("tenant", "id", *self.columns, "_deleted", "_hlc", "_site", "_clocks"))
        self.insert_new = (
            f"INSERT INTO {self.qualified} ({stored}) SELECT {stored} FROM {self.stage} WHERE _group = 0 "
            f"ON CONFLICT (tenant, id) DO NOTHING"
        )
        self._views: dict[frozenset[str], View] = {}
        self.full = self.view(self.columns)

    def view(self, columns: Iterable[str]) -> View:
        """The statements for these columns (any order; unknown names are a bug)."""
        key = frozenset(columns) - {DELETED}
        found = self._views.get(key)
        if found is None:
            found = self._views[key] = View(self, tuple(c for c in self.columns if c in key))
        return found


class View:
    """Reading and writing some columns of a table's rows (plus the hidden ones)."""

    def __init__(self, table: PgTable, columns: tuple[str, ...]):
        self.table = table
        self.columns = columns
        self.names = (*columns, DELETED)
        self._readers = [(i, table._reader[c]) for i, c in enumerate(columns) if c in table._reader]
        self._writers = [(i, table._writer[c]) for i, c in enumerate(columns) if c in table._writer]
        q = table.qualified
        exprs = "".join(f"{table._expr[c]}, " for c in columns)
        self.select_for_update = (
            f"SELECT id, {exprs}_deleted::int, _hlc, _site, _clocks FROM {q} "
            f"WHERE tenant = %s AND id = ANY(%s::text[]) ORDER BY id FOR UPDATE"
        )
        self.select_rows = (
            f"SELECT id, {exprs}_deleted::int, _hlc, _site, _clocks FROM {q} WHERE tenant = %s AND id = ANY(%s::text[])"
        )
        self.select_all = f"SELECT id, {exprs}_deleted::int, _hlc, _site, _clocks FROM {q}"
        stored = ("tenant", "id", *columns, "_deleted", "_hlc", "_site", "_clocks")
        self.copy_stage = f"COPY {table.stage} ({', '.join(stored)}, _group) FROM STDIN"
        assignments = ", ".join(f"{n} = s.{n}" for n in stored[2:])
        self.update_old = (
            f"UPDATE {q} AS t SET {assignments} FROM {table.stage} AS s "
            f"WHERE s._group = %s AND t.tenant = s.tenant AND t.id = s.id"
        )

    def row_from_db(self, record: tuple[Any, ...]) -> tuple[str, Row]:
        """(id, Row) from a row of :attr:`select_for_update`: the cells of this
        view's columns, and the stored clocks of the others."""
        n = len(self.columns)
        values: Any = record[1 : n + 1]
        if self._readers:
            values = list(values)
            for i, reader in self._readers:
                if values[i] is not None:
                    values[i] = reader(values[i])
        deleted, base_hlc, base_site, blob = record[n + 1 : n + 5]
        extra = clocks.overrides(blob) if blob else {}
        make = tuple.__new__  # a Cell without the cost of its Python-level __new__
        # Every cell at the base clock (map/zip: no Python loop per column),
        # then the few whose clock differs.
        cells = dict(
            zip(self.names, map(make, repeat(Cell), zip((*values, deleted), repeat(base_hlc), repeat(base_site))))
        )
        for name, clock in extra.items():
            cell = cells.get(name)
            if cell is not None:
                cells[name] = make(Cell, (cell[0], *clock))
        return record[0], Row(cells, exists=True, view=self, stored=((base_hlc, base_site), extra))

    def row_to_db(self, tenant: str, row_id: str, row: Row, group: int) -> tuple[Any, ...]:
        """A staging row (a tuple in :attr:`copy_stage` order). Group 0 is new
        rows (inserted whole); each other group is updated by one statement."""
        cells = row.cells
        values = [cells[name].value for name in self.columns]
        for i, writer in self._writers:
            if values[i] is not None:
                values[i] = writer(values[i])
        base_hlc, base_site, blob = clocks.compress_cells(cells, self.table.cell_names, row.stored)
        return (tenant, row_id, *values, bool(cells[DELETED].value), base_hlc, base_site, blob, group)


class Catalog(NamedTuple):
    """Every synced table's SQL for one database, which may or may not have pgvector."""

    tables: dict[str, PgTable]
    vector_columns: frozenset[tuple[str, str]]  # (table, column) stored as a real vector

    @classmethod
    def build(cls, vector_columns: frozenset[tuple[str, str]] = frozenset()) -> Catalog:
        tables = {
            name: PgTable(tbl, vector_columns=frozenset(c for t, c in vector_columns if t == name))
            for name, tbl in schema.TABLES.items()
        }
        return cls(tables, vector_columns)

    @property
    def vector(self) -> bool:
        return bool(self.vector_columns)


# Which columns of the synced tables are pgvector vectors in this database
# (where pgvector was missing when the tables were made, they are bytea).
VECTOR_COLUMNS_QUERY = f"""
SELECT c.relname, a.attname
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = '{SCHEMA}' AND a.attnum > 0 AND NOT a.attisdropped
  AND format_type(a.atttypid, NULL) = 'vector'
"""
