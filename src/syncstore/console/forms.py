"""Forms posted to the console: parsed once by the gate, read by the pages.

Only urlencoded forms are accepted (the console uploads no files), parsed by
the standard library; a field given twice keeps its last value. Values are
text as typed; the pages turn them into what the library takes, and the
library's own checks decide what is valid.
"""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import parse_qsl

import msgspec

from syncstore.errors import ValidationError

FORM_SCOPE_KEY = "syncstore.console.form"
MAX_FIELDS = 200


def parse_form(body: bytes) -> dict[str, str]:
    """The fields of an urlencoded body; ValueError when it is not one."""
    if not body:
        return {}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the form is not UTF-8") from None
    pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, strict_parsing=False)
    return {key: value for key, value in pairs}


def form(request: Any) -> dict[str, str]:
    """The posted form of a request that passed the gate (empty for a GET)."""
    return dict(request.scope.get(FORM_SCOPE_KEY) or {})


def text(fields: Mapping[str, str], name: str, default: str = "") -> str:
    return fields.get(name, default).strip()


def optional(fields: Mapping[str, str], name: str) -> str | None:
    """A field's text, or None when it is absent or blank."""
    value = fields.get(name, "").strip()
    return value or None


def integer(fields: Mapping[str, Any], name: str, *, default: int | None = None, minimum: int | None = None) -> int | None:
    """A whole-number field; blank gives ``default``; anything else is a ValidationError naming it."""
    raw = str(fields.get(name, "") or "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"must be a whole number, not {raw!r}", field=name) from None
    if minimum is not None and value < minimum:
        raise ValidationError(f"must be at least {minimum}", field=name)
    return value


def json_value(fields: Mapping[str, str], name: str) -> Any:
    """A field holding JSON (``"text"``, ``3``, ``{"a": 1}``); a ValidationError when it is not."""
    raw = fields.get(name, "").strip()
    if not raw:
        raise ValidationError("give a JSON value (quote text: \"like this\")", field=name)
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ValidationError(f"not JSON ({exc}); quote text: \"like this\"", field=name) from None


def page_number(params: Mapping[str, str]) -> int:
    """The ``page`` query parameter: 1 when absent or not a positive number."""
    try:
        return max(1, int(params.get("page", "1")))
    except ValueError:
        return 1
