"""Reading a localStorage export and finding the task and environment lists in it.

An export is a JSON object of localStorage keys. Two keys hold data, each a
Zustand ``persist`` store serialised as a string::

    "task-store":   '{"state": {"tasks": [...]}, "version": 0}'
    "environments": '{"state": {"environments": [...]}, "version": 0}'

Tools that produced exports differ, so every variant below is read the same:
the value as a string or already decoded, with or without the ``state``
wrapper, a bare list, ``version`` missing. Everything else (other keys, other
fields beside the list) is reported as ignored; nothing there fails the import.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import msgspec

from syncstore.legacy.errors import ExportFormatError
from syncstore.legacy.report import Ignored, Skipped

# localStorage key -> the list the store keeps its items in.
STORES = {"task-store": "tasks", "environments": "environments"}
KNOWN_VERSION = 0

# Keys the old app is known to leave behind, with a clearer reason than "unknown".
LEFTOVERS = {
    "task-store-backup": "a backup copy the old app kept; the live task-store is what is imported",
    "electric:offline-queue": "the old app's queue of pending sync writes, not user data",
    "migration-status": "the old app's own migration flag",
}


@dataclass
class Source:
    """The decoded export and where it came from."""

    data: Any
    label: str  # the file path, or "<data>" for an object passed in
    sha256: str
    raw: bytes  # the JSON text, searched once for tokens


@dataclass
class Envelope:
    tasks: list[Any] = field(default_factory=list)
    environments: list[Any] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    problems: list[Skipped] = field(default_factory=list)  # store keys that could not be read
    warnings: list[str] = field(default_factory=list)
    found: set[str] = field(default_factory=set)  # store keys that were present


def read_source(path_or_data: str | os.PathLike[str] | bytes | Mapping[str, Any]) -> Source:
    """A path (str or PathLike), JSON text as bytes, or an already decoded export."""
    if isinstance(path_or_data, Mapping):
        raw = msgspec.json.encode(path_or_data, order="sorted")
        return Source(dict(path_or_data), "<data>", hashlib.sha256(raw).hexdigest(), raw)
    if isinstance(path_or_data, (bytes, bytearray, memoryview)):
        raw, label = bytes(path_or_data), "<data>"
    else:
        label = os.fspath(path_or_data)
        try:
            with open(label, "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            raise ExportFormatError(f"cannot read {label}: {exc.strerror or exc}") from None
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ExportFormatError(f"{label}: not JSON ({exc})") from None
    return Source(data, label, hashlib.sha256(raw).hexdigest(), raw)


def decode_envelope(data: Any) -> Envelope:
    if not isinstance(data, dict):
        raise ExportFormatError(
            f"not a localStorage export: expected a JSON object of keys, got {_kind(data)}"
        )
    out = Envelope()
    for key, value in data.items():
        list_name = STORES.get(key)
        if list_name is None:
            out.ignored.append(Ignored(key=key, reason=LEFTOVERS.get(key, "not a store syncstore imports")))
            continue
        out.found.add(key)
        items = _store_items(key, value, list_name, out)
        if items is not None:
            setattr(out, list_name, items)
    if not out.found:
        out.warnings.append("the export has neither a task-store nor an environments key: nothing to import")
    return out


def _store_items(key: str, value: Any, list_name: str, out: Envelope) -> list[Any] | None:
    """The item list of one store, or None (with the problem recorded)."""

    def problem(reason: str) -> None:
        out.problems.append(Skipped(kind="key", id=key, reason=reason))

    # localStorage holds strings; some exports double-encode them, some decode them.
    for depth in range(2):
        if not isinstance(value, str):
            break
        try:
            value = msgspec.json.decode(value)
        except msgspec.DecodeError as exc:
            if depth == 0:
                problem(f"{key}: the value is not valid JSON ({exc})")
            else:
                problem(f"{key}: expected an object or a list, got a string")
            return None
    if isinstance(value, list):
        return value
    if not isinstance(value, dict):
        problem(f"{key}: expected an object or a list, got {_kind(value)}")
        return None
    where = key
    if "version" in value:
        version = value["version"]
        if version != KNOWN_VERSION:
            out.warnings.append(f"{key}: store version {version!r}, read as version {KNOWN_VERSION}")
    if "state" in value:
        for other in value:
            if other not in ("state", "version"):
                out.ignored.append(Ignored(key=f"{key}.{other}", reason="not part of the store's state"))
        value = value["state"]
        where = f"{key}.state"
        if not isinstance(value, dict):
            problem(f"{where}: expected an object, got {_kind(value)}")
            return None
    if list_name not in value:
        problem(f"{where}: no {list_name!r} list")
        return None
    for other in value:
        if other not in (list_name, "version"):
            out.ignored.append(Ignored(key=f"{where}.{other}", reason=f"only {list_name!r} is imported"))
    items = value[list_name]
    if not isinstance(items, list):
        problem(f"{where}.{list_name}: expected a list, got {_kind(items)}")
        return None
    return items


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )
