"""Validation of whole rows on the replica's write path, fast.

:func:`syncstore.schema.validate_row` is the reference: readable, one value at
a time through :func:`syncstore.schema.to_storage`. Writing rows spends most of
its Python time there, so the replica uses a checker compiled once per table
that accepts a value unchanged when it is already in canonical form (the
common case: text that is text, an int that is an int, a timestamp already in
the stored form) and hands every other value to ``to_storage``, which
converts it or raises the same :class:`ValidationError`. For a good row the result
equals ``validate_row``'s; a bad row raises a ``ValidationError`` as it does
(when a row has several problems, either may be named first). A property
test holds the two together.

The insert checker is generated Python source, one straight-line block per
column (the technique of ``dataclasses`` and ``attrs``): a loop over column
descriptions spent more time unpacking them than checking the values.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any, Callable, Mapping

from syncstore import schema, storable
from syncstore.errors import ValidationError

_MISSING = object()
_CANONICAL_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z").fullmatch
_MAX_TEXT = storable.MAX_TEXT
_MAX_INDEXED = storable.MAX_INDEXED_TEXT  # for ASCII text (the fast path), characters are bytes
_MAX_BLOB = storable.MAX_BLOB
_INT_MIN, _INT_MAX = storable.INT_MIN, storable.INT_MAX

# Short JSON texts already known to be canonical (``encode(decode(t)) == t``),
# e.g. "{}" and the metadata an agent writes on every row. Bounded: cleared when full.
# One set per JSON shape: a text canonical for "any JSON" may not be an object.
_CANONICAL_JSON: dict[str | None, set[str]] = {None: set(), "object": set(), "array": set()}
_JSON_MEMO_MAX = 4096
_JSON_MEMO_LEN = 256

# Value kinds, as small ints so the per-value dispatch is a cheap comparison.
_TEXT, _INT, _REAL, _BOOL, _JSON, _TIME, _BLOB, _OTHER = range(8)
_KINDS = {"text": _TEXT, "integer": _INT, "real": _REAL, "boolean": _BOOL, "json": _JSON,
          "timestamp": _TIME, "blob": _BLOB, "vector": _OTHER}


# Timestamps already checked, e.g. the created_at shared by a batch of rows. Bounded.
_CANONICAL_TIMES: set[str] = set()


def _canonical_time(value: str) -> bool:
    if not _CANONICAL_TIME(value):
        return False
    try:
        dt.datetime.fromisoformat(value[:-1])  # the digits make a real date and time
    except ValueError:
        return False
    if len(_CANONICAL_TIMES) >= _JSON_MEMO_MAX:
        _CANONICAL_TIMES.clear()
    _CANONICAL_TIMES.add(value)
    return True


def _json_text(col: schema.Column, value: str, table: str) -> str:
    known = _CANONICAL_JSON[col.shape]
    if value in known:
        return value
    canonical = schema.to_storage(col, value, table_name=table)
    if canonical == value and len(value) <= _JSON_MEMO_LEN:
        if len(known) >= _JSON_MEMO_MAX:
            known.clear()
        known.add(value)
    return canonical


class RowChecker:
    """Checks rows of one table; build once with :func:`checker`."""

    def __init__(self, tbl: schema.Table):
        self.table = tbl
        self.names = tbl.column_names
        self._known = frozenset(self.names)
        self._by_name = {
            c.name: (_KINDS[c.type], c, c.required, None if c.choices is None else frozenset(c.choices), c.minimum, c.maximum)
            for c in tbl.columns
        }
        self._longest = {c.name: _MAX_INDEXED if c.indexed else _MAX_TEXT for c in tbl.columns}
        self._check_insert = self._compile_insert()

    def _value(self, kind: int, col: schema.Column, value: Any, choices, minimum, maximum) -> Any:
        """The canonical form of one non-None value."""
        cls = type(value)
        if kind == _TEXT:
            if (
                cls is str
                and value.isascii()  # no lone surrogates to check for (and a character is a byte)
                and len(value) <= self._longest[col.name]
                and "\x00" not in value
                and (choices is None or value in choices)
            ):
                return value
        elif kind == _INT or kind == _BOOL:
            if cls is int and (
                (value == 0 or value == 1)
                if kind == _BOOL
                else _INT_MIN <= value <= _INT_MAX
                and (minimum is None or value >= minimum)
                and (maximum is None or value <= maximum)
            ):
                return value
        elif kind == _REAL:
            if (
                cls is float
                and math.isfinite(value)
                and (minimum is None or value >= minimum)
                and (maximum is None or value <= maximum)
            ):
                return value
        elif kind == _TIME:
            if cls is str and _canonical_time(value):
                return value
        elif kind == _JSON:
            if cls is str:
                return _json_text(col, value, self.table.name)
        elif kind == _BLOB:
            if cls is bytes and len(value) <= _MAX_BLOB:
                return value
        return schema.to_storage(col, value, table_name=self.table.name)

    def check(self, values: Mapping[str, Any], *, insert: bool) -> dict[str, Any]:
        """What ``schema.validate_row(table, values, insert=insert)`` returns.

        On insert the result holds every column, in table order."""
        if type(values) is not dict and not isinstance(values, Mapping):
            raise ValidationError("row values must be a mapping", table=self.table.name)
        if insert:
            return self._check_insert(values)
        out: dict[str, Any] = {}
        specs = self._by_name
        for name, value in values.items():
            spec = specs.get(name) if type(name) is str else None
            if spec is None:
                self._unknown(values)
            kind, col, required, choices, minimum, maximum = spec
            if value is None:
                if required:
                    raise ValidationError("is required and may not be null", table=self.table.name, field=name)
                out[name] = None
            elif name == "id":
                out[name] = self._id(value)
            else:
                out[name] = self._value(kind, col, value, choices, minimum, maximum)
        return out

    def _id(self, value: Any) -> str:
        if type(value) is not str or not schema.UUID_PATTERN.match(value):
            raise ValidationError("id must be a UUID string", table=self.table.name, field="id")
        return value

    def _required(self, name: str, *, null: bool) -> None:
        problem = "is required and may not be null" if null else "is required"
        raise ValidationError(problem, table=self.table.name, field=name)

    def _slow(self, col: schema.Column, value: Any) -> Any:
        return schema.to_storage(col, value, table_name=self.table.name)

    def _json(self, col: schema.Column, value: Any) -> Any:
        if type(value) is str:
            return _json_text(col, value, self.table.name)
        return schema.to_storage(col, value, table_name=self.table.name)

    def _compile_insert(self) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
        """Generate the insert checker: every column in order, each value
        accepted as is when canonical, else converted by ``to_storage``."""
        env: dict[str, Any] = {
            "MISSING": _MISSING, "isfinite": math.isfinite, "canonical_time": _canonical_time,
            "CANON_TIME": _CANONICAL_TIMES, "UUID": schema.UUID_PATTERN.match, "MAX_TEXT": _MAX_TEXT,
            "MAX_INDEXED": _MAX_INDEXED, "MAX_BLOB": _MAX_BLOB,
            "slow": self._slow, "json": self._json, "check_id": self._id, "required": self._required,
            "unknown": self._unknown,
        }
        lines = ["def check_insert(values):", "    get = values.get", "    used = 0"]
        for i, col in enumerate(self.table.columns):
            env[f"COL{i}"] = col
            env[f"DEFAULT{i}"] = col.default
            env[f"CHOICES{i}"] = None if col.choices is None else frozenset(col.choices)
            env[f"CANON_JSON{i}"] = _CANONICAL_JSON[col.shape] if col.type == "json" else None
            if col.required:
                missing = f"required({col.name!r}, null=False)"
                null = f"required({col.name!r}, null=True)"
            else:
                missing = f"c{i} = DEFAULT{i}"
                null = f"c{i} = None"
            if col.name == "id":
                convert = "check_id(v)"
                fast = "type(v) is str and UUID(v)"
            elif col.type == "json":
                convert = f"json(COL{i}, v)"
                fast = f"type(v) is str and v in CANON_JSON{i}"
            else:
                convert = f"slow(COL{i}, v)"
                fast = _fast_test(col, i)
            lines += [
                f"    v = get({col.name!r}, MISSING)",
                "    if v is MISSING:",
                f"        {missing}",
                "    else:",
                "        used += 1",
                "        if v is None:",
                f"            {null}",
                f"        elif {fast}:",
                f"            c{i} = v",
                "        else:",
                f"            c{i} = {convert}",
            ]
        lines += [
            "    if used != len(values):",
            "        unknown(values)",
            "    return {" + ", ".join(f"{c.name!r}: c{i}" for i, c in enumerate(self.table.columns)) + "}",
        ]
        self.source = "\n".join(lines)
        exec(compile(self.source, f"<rowcheck {self.table.name}>", "exec"), env)
        return env["check_insert"]

    def _unknown(self, values: Mapping[str, Any]) -> None:
        for name in values:
            if not isinstance(name, str):
                raise ValidationError(f"column name must be text, got {name!r}", table=self.table.name)
            if name not in self._known:
                raise ValidationError("unknown column", table=self.table.name, field=name)


def _fast_test(col: schema.Column, i: int) -> str:
    """A Python expression true when ``v`` is already this column's canonical form."""
    kind = col.type
    if kind == "text":
        longest = "MAX_INDEXED" if col.indexed else "MAX_TEXT"
        test = f'type(v) is str and v.isascii() and len(v) <= {longest} and "\\x00" not in v'
        return test + (f" and v in CHOICES{i}" if col.choices is not None else "")
    if kind == "boolean":
        return "type(v) is int and (v == 0 or v == 1)"
    if kind == "integer":
        low = -(2**63) if col.minimum is None else max(-(2**63), col.minimum)
        high = 2**63 - 1 if col.maximum is None else min(2**63 - 1, col.maximum)
        return f"type(v) is int and {low!r} <= v <= {high!r}"
    if kind == "real":
        bounds = "".join(
            [f" and v >= {col.minimum!r}" if col.minimum is not None else "",
             f" and v <= {col.maximum!r}" if col.maximum is not None else ""]
        )
        return "type(v) is float and isfinite(v)" + bounds
    if kind == "timestamp":
        return "type(v) is str and (v in CANON_TIME or canonical_time(v))"
    if kind == "blob":
        return "type(v) is bytes and len(v) <= MAX_BLOB"
    return "False"  # vectors: always converted


_CHECKERS: dict[str, RowChecker] = {}


def checker(tbl: schema.Table) -> RowChecker:
    found = _CHECKERS.get(tbl.name)
    if found is None or found.table is not tbl:
        found = _CHECKERS[tbl.name] = RowChecker(tbl)
    return found


Check = Callable[[Mapping[str, Any]], dict[str, Any]]
