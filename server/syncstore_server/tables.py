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

from typing import Any, Callable, NamedTuple

import msgspec
import numpy as np

from syncstore import schema
from syncstore.core.merge import DELETED, Cell

from syncstore_server import clocks
from syncstore_server.merge_plan import Row

SCHEMA = "syncstore"
_TIMESTAMP = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'"


def _json_reader(text: str) -> str:
    return schema.encode_json(msgspec.json.decode(text))


def _vector_reader(values: list[float]) -> bytes:
    return np.asarray(values, dtype=np.float32).tobytes()


def _vector_writer(raw: bytes) -> str:
    return "[" + ",".join(map(repr, np.frombuffer(raw, dtype=np.float32).tolist())) + "]"


class PgTable:
    """One synced table's statements and value conversions."""

    def __init__(self, tbl: schema.Table, *, vector_columns: frozenset[str] = frozenset()):
        self.table = tbl
        self.name = tbl.name
        self.qualified = f"{SCHEMA}.{tbl.name}"
        self.columns: tuple[str, ...] = tbl.column_names[1:]  # every column but id
        self.cell_names: tuple[str, ...] = (*self.columns, DELETED)
        exprs = []
        readers: list[Callable[[Any], Any] | None] = []
        writers: list[Callable[[Any], Any] | None] = []
        for col in tbl.columns[1:]:
            expr, reader, writer = col.name, None, None
            if col.type == "boolean":
                expr = f"{col.name}::int"
            elif col.type == "timestamp":
                expr = f"to_char({col.name} AT TIME ZONE 'UTC', {_TIMESTAMP})"
            elif col.type == "json":
                expr, reader = f"{col.name}::text", _json_reader
            elif col.type == "vector" and col.name in vector_columns:
                expr, reader, writer = f"{col.name}::real[]", _vector_reader, _vector_writer
            exprs.append(expr)
            readers.append(reader)
            writers.append(writer)
        self._readers = [(i, f) for i, f in enumerate(readers) if f is not None]
        self._writers = [(i, f) for i, f in enumerate(writers) if f is not None]
        q = self.qualified
        self.select_for_update = (
            f"SELECT id, {', '.join(exprs)}, _deleted::int, _hlc, _site, _clocks FROM {q} "
            f"WHERE tenant = %s AND id = ANY(%s::text[]) ORDER BY id FOR UPDATE"
        )
        self.select_rows = (
            f"SELECT id, {', '.join(exprs)}, _deleted::int, _hlc, _site, _clocks FROM {q} "
            f"WHERE tenant = %s AND id = ANY(%s::text[])"
        )
        self.stage = f"_ss_stage_{tbl.name}"
        stored = ("tenant", "id", *self.columns, "_deleted", "_hlc", "_site", "_clocks")
        names = ", ".join(stored)
        self.create_stage = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self.stage} (LIKE {q}, _new boolean NOT NULL) ON COMMIT DELETE ROWS"
        )
        self.copy_stage = f"COPY {self.stage} ({names}, _new) FROM STDIN"
        self.insert_new = (
            f"INSERT INTO {q} ({names}) SELECT {names} FROM {self.stage} WHERE _new "
            f"ON CONFLICT (tenant, id) DO NOTHING"
        )
        assignments = ", ".join(f"{n} = s.{n}" for n in stored[2:])
        self.update_old = (
            f"UPDATE {q} AS t SET {assignments} FROM {self.stage} AS s "
            f"WHERE NOT s._new AND t.tenant = s.tenant AND t.id = s.id"
        )

    def row_from_db(self, record: tuple[Any, ...]) -> tuple[str, Row]:
        """(id, Row) from a row of :attr:`select_for_update`."""
        n = len(self.columns)
        values: Any = record[1 : n + 1]
        if self._readers:
            values = list(values)
            for i, reader in self._readers:
                if values[i] is not None:
                    values[i] = reader(values[i])
        deleted, base_hlc, base_site, blob = record[n + 1 : n + 5]
        make = tuple.__new__  # a Cell without the cost of its Python-level __new__
        names = self.cell_names
        if blob is None:
            base = (base_hlc, base_site)
            cells = {name: make(Cell, (value, *base)) for name, value in zip(names, (*values, deleted))}
        else:
            extra = clocks.overrides(blob)
            cells = {}
            for name, value in zip(names, (*values, deleted)):
                clock = extra.get(name)
                cells[name] = make(Cell, (value, base_hlc, base_site) if clock is None else (value, *clock))
        return record[0], Row(cells, exists=True)

    def row_to_db(self, tenant: str, row_id: str, row: Row) -> tuple[Any, ...]:
        """A staging row (a tuple in :attr:`copy_stage` order) from a Row's cells."""
        cells = row.cells
        values = [cells[name].value for name in self.columns]
        for i, writer in self._writers:
            if values[i] is not None:
                values[i] = writer(values[i])
        base_hlc, base_site, blob = clocks.compress_cells(cells)
        return (tenant, row_id, *values, bool(cells[DELETED].value), base_hlc, base_site, blob, not row.exists)


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
