"""Checking one legacy item before it is mapped: every problem, in words.

An item with any problem is skipped and listed with the reasons; the rest of
the export still imports (unless ``strict``). These checks cover what the old
app's format promises (ids, titles, status words, dates, the message list);
column types are checked afterwards by the schema, in :mod:`.mapping`.
"""

from __future__ import annotations

from typing import Any

from syncstore import schema

# The legacy status words and the syncstore status each one maps to. The word
# itself is kept too, in the task's metadata["legacy"]["status"].
STATUS_MAP = {
    "IN_PROGRESS": "in_progress",
    "PAUSED": "paused",
    "DONE": "completed",
    "MERGED": "merged",
    "CANCELLED": "cancelled",
}

# Message ids are derived from (task id, position) with the position in the
# last six hex digits of a UUID, so a task holds at most this many messages.
MAX_MESSAGES = 0xFFFFFF


def show(value: Any, limit: int = 60) -> str:
    """A value for a reason line: short, and safe to print."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_id(item: dict[str, Any], problems: list[str]) -> None:
    value = item.get("id")
    if value is None or value == "":
        problems.append("missing id")
    elif not schema.is_uuid(value):
        problems.append(f"id is not a UUID: {show(value)}")


def _check_text(item: dict[str, Any], name: str, problems: list[str]) -> None:
    value = item.get(name)
    if not isinstance(value, str) or not value.strip():
        problems.append(f"missing {name}" if value in (None, "") else f"{name} is not a non-empty text: {show(value)}")


def _check_dates(item: dict[str, Any], problems: list[str]) -> None:
    for name in ("createdAt", "updatedAt"):
        value = item.get(name)
        if value is None or value == "":
            problems.append(f"missing {name}")
            continue
        if not isinstance(value, str):
            problems.append(f"{name} is not a date: {show(value)}")
            continue
        try:
            schema.parse_timestamp(value)
        except ValueError:
            problems.append(f"{name} is not an ISO-8601 date with a timezone: {show(value)}")


def check_task(item: Any) -> list[str]:
    """The problems of one legacy task; empty when it can be imported."""
    if not isinstance(item, dict):
        return ["not an object"]
    problems: list[str] = []
    _check_id(item, problems)
    _check_text(item, "title", problems)
    status = item.get("status")
    if status is None or status == "":
        problems.append("missing status")
    elif not isinstance(status, str) or status not in STATUS_MAP:
        problems.append(f"unknown status {show(status)} (known: {', '.join(STATUS_MAP)})")
    _check_dates(item, problems)
    pull_request = item.get("pullRequest")
    if pull_request is not None and not isinstance(pull_request, dict):
        problems.append(f"pullRequest is not an object: {show(pull_request)}")
    messages = item.get("messages", [])
    if messages is None:
        messages = []
    if not isinstance(messages, list):
        problems.append("messages is not a list")
        return problems
    if len(messages) > MAX_MESSAGES:
        problems.append(f"more than {MAX_MESSAGES} messages")
    roles = schema.MESSAGE_ROLES
    for position, message in enumerate(messages):
        if not isinstance(message, dict):
            problems.append(f"message {position} is not an object")
        elif message.get("role") not in roles:
            problems.append(f"message {position} has an unknown role {show(message.get('role'))}")
        else:
            kind = message.get("type", "message")
            if not isinstance(kind, str) or not kind or "\x00" in kind or len(kind) > 200:
                problems.append(f"message {position} has an invalid type {show(kind)}")
    return problems


def check_environment(item: Any) -> list[str]:
    """The problems of one legacy environment; empty when it can be imported.
    The token is never quoted in a reason."""
    if not isinstance(item, dict):
        return ["not an object"]
    problems: list[str] = []
    _check_id(item, problems)
    _check_text(item, "name", problems)
    _check_dates(item, problems)
    token = item.get("githubToken")
    if token is not None and not isinstance(token, str):
        problems.append("githubToken is not text")
    return problems
