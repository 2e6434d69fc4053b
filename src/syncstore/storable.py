"""What a value must be for every replica and for PostgreSQL to hold it.

One definition, used by the schema's conversion of values
(:func:`syncstore.schema.to_storage`), the replica's row checker (every local
write) and the server's check of every pushed change: a value the replica
accepts is one the server can store, so a push never fails for good on a
value that was fine offline. The limits:

- **text**: at most :data:`MAX_TEXT` characters, valid Unicode (no lone
  surrogate: PostgreSQL stores UTF-8), no NUL character (PostgreSQL's text
  cannot hold one); in a column with an index, at most :data:`MAX_INDEXED_TEXT`
  bytes of UTF-8 (a btree entry holds at most about 2.7 kB, with the tenant);
- **JSON**: valid JSON whose canonical text (compact, sorted keys) has at most
  :data:`MAX_JSON_BYTES` bytes of UTF-8, arrays and objects nested at most
  :data:`MAX_JSON_DEPTH` deep (deeper values exhaust the stack of the programs
  that read them), no ``\\u0000`` (``jsonb`` cannot hold it); numbers are kept
  as ``jsonb`` gives them back (a float written with an exponent, 1e16 and
  above, is the integer it denotes; -0.0 is 0.0), so every replica holds the
  server's bytes;
- **integers** within 64 bits; **reals** finite;
- **blobs** at most :data:`MAX_BLOB` bytes; **vectors** of 1 to
  :data:`MAX_VECTOR_DIMS` finite float32 components (pgvector's limit).

Each check returns the canonical value or raises :class:`ValueError` with the
problem in words; callers name the table and column.
"""

from __future__ import annotations

import itertools
import re
from decimal import Decimal
from typing import Any

import msgspec

MAX_TEXT = 1_000_000  # characters in one text value
MAX_JSON_BYTES = 2 * 1024 * 1024  # bytes (UTF-8) of one JSON value's canonical text
MAX_INDEXED_TEXT = 1_000  # bytes (UTF-8) of a text value in a column with an index
MAX_JSON_DEPTH = 128  # arrays and objects nested in one JSON value
MAX_BLOB = 2 * 1024 * 1024  # bytes in one blob value
MAX_VECTOR_DIMS = 16_000  # components of one vector (pgvector's vector type)
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

# A JSON string token (skipped whole), or a bracket.
_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
# Numbers jsonb gives back in another form: a float with a positive exponent
# (jsonb prints it whole), and negative zero (numeric has none). Strings are
# matched first so that nothing inside one is touched.
_EXPONENT = re.compile(r"e[0-9]")  # a literal first: the regex engine skips ahead to each "e"
_REWRITE = re.compile(r'"(?:[^"\\]|\\.)*"|(-?[0-9]+(?:\.[0-9]+)?e[0-9]+|-0\.0(?![0-9]))')
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")  # an escaped NUL, not an escaped backslash before "u0000"

_encode = msgspec.json.Encoder(order="sorted").encode
_decode = msgspec.json.decode


def text(value: str, *, indexed: bool = False) -> str:
    """``value`` if every replica and PostgreSQL can hold it as text."""
    if len(value) > MAX_TEXT:
        raise ValueError(f"text longer than {MAX_TEXT} characters")
    if "\x00" in value:
        raise ValueError("text contains a NUL character")
    if value.isascii():
        size = len(value)
    else:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError("text is not valid Unicode (it has a lone surrogate)") from None
    if indexed and size > MAX_INDEXED_TEXT:
        raise ValueError(f"text in an indexed column is at most {MAX_INDEXED_TEXT} bytes of UTF-8, got {size}")
    return value


def too_deep(json_text: str) -> bool:
    """Whether arrays and objects nest deeper than :data:`MAX_JSON_DEPTH` in
    this JSON text (counted without parsing it, so without recursion)."""
    if json_text.count("[") + json_text.count("{") <= MAX_JSON_DEPTH:
        return False
    steps = (_STEP.get(token, 0) for token in _BRACKETS.findall(json_text))
    return max(itertools.accumulate(steps), default=0) > MAX_JSON_DEPTH


def json(value: Any) -> str:
    """The canonical JSON text of ``value`` (JSON text, or a Python value to encode)."""
    if type(value) is str or isinstance(value, str):
        if len(value) > 4 * MAX_JSON_BYTES:  # whitespace may shrink; beyond this it cannot fit
            raise ValueError(f"JSON text longer than {MAX_JSON_BYTES} bytes")
        if too_deep(value):
            raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        decoded = _decode(value) if isinstance(value, str) else value
        canonical = _encode(decoded)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (msgspec.DecodeError, msgspec.EncodeError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    return encoded_json(canonical, depth_checked=isinstance(value, str))


def encoded_json(encoded: bytes, *, depth_checked: bool = False) -> str:
    """The canonical JSON text of the compact sorted-key JSON msgspec wrote
    (for writers that encode values themselves, as the events API does)."""
    if len(encoded) > MAX_JSON_BYTES:
        raise ValueError(f"JSON text longer than {MAX_JSON_BYTES} bytes")
    canonical = encoded.decode()
    if not depth_checked and canonical.count("[") + canonical.count("{") > MAX_JSON_DEPTH and too_deep(canonical):
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if "\\u0000" in canonical and _JSON_NUL.search(canonical):
        raise ValueError("JSON text may not contain the NUL character (\\u0000)")
    return jsonb_numbers(canonical)


def jsonb_numbers(canonical: str) -> str:
    """Compact sorted-key JSON text (as msgspec writes it) with its numbers
    written as jsonb gives them back: a float with a positive exponent whole,
    -0.0 as 0.0. Strings are left as they are."""
    if "-0.0" in canonical or _has_exponent(canonical):
        return _REWRITE.sub(_as_jsonb, canonical)
    return canonical


def _has_exponent(text: str) -> bool:
    """Whether a digit, "e" and a digit occur (a number with a positive exponent,
    or such letters in a string, which the rewrite then leaves alone)."""
    search = _EXPONENT.search
    found = search(text)
    while found is not None:
        start = found.start()
        if start and "0" <= text[start - 1] <= "9":
            return True
        found = search(text, start + 1)
    return False


def _as_jsonb(match: re.Match[str]) -> str:
    number = match.group(1)
    if number is None:
        return match.group(0)  # a string
    if number.startswith("-0.0"):
        return "0.0"
    return str(int(Decimal(number)))


def blob(value: bytes) -> bytes:
    if len(value) > MAX_BLOB:
        raise ValueError(f"blob longer than {MAX_BLOB} bytes")
    return value


def vector_dims(count: int) -> None:
    if count == 0:
        raise ValueError("expected a non-empty one-dimensional vector")
    if count > MAX_VECTOR_DIMS:
        raise ValueError(f"a vector has at most {MAX_VECTOR_DIMS} components, got {count}")
