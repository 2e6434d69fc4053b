"""Namespaces of the LangGraph store as stored: the JSON array of their labels.

``("users", "alice")`` is stored as ``["users","alice"]`` (compact JSON). Any
label survives the trip, and prefixes align with labels: every namespace
under ``("users", "alice")`` starts with the text ``["users","alice"``
followed by ``,`` or ``]``, and no other namespace does (the closing quote of
``"alice"`` is part of the text, so ``("users", "alice2")`` does not match).
A prefix is then a range of the namespace index: SQLite compares text
byte-wise, and U+10FFFF encodes to the greatest bytes UTF-8 has.

Wildcards (``*``) in ``list_namespaces`` conditions, and suffixes, are
matched on the decoded labels (:func:`matches`).
"""

from __future__ import annotations

from typing import Any, Sequence

import msgspec

_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(tuple[str, ...])
_TOP = "\U0010ffff"


def encode(namespace: Sequence[str]) -> str:
    return _encode(list(namespace)).decode()


def decode(text: str) -> tuple[str, ...]:
    return _decode.decode(text)


def prefix_sql(prefix: Sequence[str], column: str = "namespace") -> tuple[str, list[Any]]:
    """A WHERE clause (and its parameters) for the namespaces starting with
    ``prefix``, label by label; the empty prefix matches every namespace."""
    if not prefix:
        return "1", []
    head = encode(prefix)[:-1]  # without the closing bracket
    # The range lets SQLite use the index; the substr check makes the match exact.
    return (
        f"{column} >= ? and {column} < ? and substr({column}, 1, ?) = ?",
        [head, head + _TOP, len(head), head],
    )


def matches(namespace: tuple[str, ...], match_type: str, path: Sequence[str]) -> bool:
    """LangGraph's match conditions: ``path`` is a prefix (or suffix) of the
    namespace, a ``*`` label matching any one label."""
    if len(namespace) < len(path):
        return False
    if match_type == "prefix":
        pairs = zip(namespace, path)
    elif match_type == "suffix":
        pairs = zip(reversed(namespace), reversed(path))
    else:
        raise ValueError(f"unsupported match type {match_type!r}: prefix or suffix")
    return all(wanted == "*" or label == wanted for label, wanted in pairs)


def literal_prefix(path: Sequence[str]) -> tuple[str, ...]:
    """The labels of a prefix condition before its first wildcard."""
    out = []
    for label in path:
        if label == "*":
            break
        out.append(label)
    return tuple(out)
