"""The ``filter`` of a LangGraph store search, applied to an item's value.

The same rules as LangGraph's own stores: ``{"color": "red"}`` is equality
(nested mappings and lists compare element by element), and a mapping of
operators compares with them: ``$eq``, ``$ne``, ``$gt``, ``$gte``, ``$lt``,
``$lte`` (the ordered ones as numbers). A filter is checked once, before any
row is read, so a bad one is refused with a clear error.
"""

from __future__ import annotations

from typing import Any, Mapping

from syncstore.errors import ValidationError

OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")


def check(filter: Mapping[str, Any] | None) -> dict[str, Any]:
    """The filter as a dict; a ValidationError names an unknown operator or a non-number bound."""
    if not filter:
        return {}
    if not isinstance(filter, Mapping):
        raise ValidationError(f"a search filter is a mapping of field to value, not {type(filter).__name__}")
    _check_value(filter)
    return dict(filter)


def _check_value(wanted: Any) -> None:
    if isinstance(wanted, Mapping):
        if any(isinstance(k, str) and k.startswith("$") for k in wanted):
            for op, bound in wanted.items():
                if op not in OPERATORS:
                    raise ValidationError(f"unsupported filter operator {op!r}: one of {', '.join(OPERATORS)}")
                if op in ("$gt", "$gte", "$lt", "$lte") and (isinstance(bound, bool) or not isinstance(bound, (int, float))):
                    raise ValidationError(f"{op} compares with a number, not {bound!r}")
        else:
            for value in wanted.values():
                _check_value(value)
    elif isinstance(wanted, (list, tuple)):
        for value in wanted:
            _check_value(value)


def passes(value: Mapping[str, Any], filter: Mapping[str, Any]) -> bool:
    return all(_compare(value.get(key), wanted) for key, wanted in filter.items())


def _compare(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, Mapping):
        if any(isinstance(k, str) and k.startswith("$") for k in wanted):
            return all(_apply(actual, op, bound) for op, bound in wanted.items())
        return isinstance(actual, Mapping) and all(_compare(actual.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, (list, tuple)):
        return (
            isinstance(actual, (list, tuple))
            and len(actual) == len(wanted)
            and all(_compare(a, w) for a, w in zip(actual, wanted))
        )
    return actual == wanted


def _apply(actual: Any, op: str, bound: Any) -> bool:
    if op == "$eq":
        return actual == bound
    if op == "$ne":
        return actual != bound
    if isinstance(actual, bool) or not isinstance(actual, (int, float)):
        return False  # an ordered comparison with a missing or non-number value fails
    if op == "$gt":
        return actual > bound
    if op == "$gte":
        return actual >= bound
    if op == "$lt":
        return actual < bound
    return actual <= bound
