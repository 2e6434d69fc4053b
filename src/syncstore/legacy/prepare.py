"""From the envelope's raw items to mapped rows, with every skip explained.

Each item is checked (:mod:`.validate`), its GitHub tokens removed from text
(:mod:`.redact`), then mapped (:mod:`.mapping`). Problems become ``skipped``
entries of the report; nothing here touches the replica.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import msgspec

from syncstore.errors import ValidationError
from syncstore.legacy.envelope import Envelope
from syncstore.legacy.mapping import TOKEN_FIELD, MappedEnvironment, MappedTask, map_environment, map_task
from syncstore.legacy.redact import MARK, Redactor, find_tokens
from syncstore.legacy.report import ImportReport, Skipped
from syncstore.legacy.validate import check_environment, check_task

_encode = msgspec.json.encode


@dataclass
class Prepared:
    tasks: list[MappedTask]
    environments: list[MappedEnvironment]
    redactor: Redactor  # every token seen in the export, to keep them out of printed text


def prepare(envelope: Envelope, raw: bytes, report: ImportReport, *, now_ms: int) -> Prepared:
    env_tokens = [
        item[TOKEN_FIELD]
        for item in envelope.environments
        if isinstance(item, dict) and isinstance(item.get(TOKEN_FIELD), str) and item[TOKEN_FIELD]
    ]
    tokens = find_tokens(raw, env_tokens) | set(env_tokens)
    redactor = Redactor(tokens)
    # A token found only where environments keep it needs no search of the tasks.
    env_blob = _encode(envelope.environments)
    elsewhere = any(raw.count(t.encode()) > env_blob.count(t.encode()) for t in tokens)

    environments = _prepare_items(
        envelope.environments,
        "environment",
        check_environment,
        lambda item: map_environment(item, now_ms=now_ms),
        report,
        redactor,
        redact=lambda item: _redacted(item, redactor, keep=TOKEN_FIELD) if redactor else (item, 0),
    )
    tasks = _prepare_items(
        envelope.tasks,
        "task",
        check_task,
        lambda item: map_task(item, now_ms=now_ms),
        report,
        redactor,
        redact=lambda item: _redacted(item, redactor) if elsewhere else (item, 0),
    )
    report.environments.source = len(envelope.environments)
    report.tasks.source = len(envelope.tasks)
    for env in environments:
        if env.future:
            report.warnings.append(f"environment {env.row['id']}: updatedAt is later than now; stamped with the import time")
    for task in tasks:
        report.messages.source += len(task.messages)
        report.messages.shell_pairs += task.shell_pairs
        report.messages.duplicates += len(task.duplicates)
        report.duplicates.extend(task.duplicates)
        report.warnings.extend(redactor.text(note)[0] for note in task.notes)
        if task.future:
            report.warnings.append(f"task {task.row['id']}: updatedAt is later than now; stamped with the import time")
    report.secrets.found = sum(1 for env in environments if env.token)
    return Prepared(tasks, environments, redactor)


def _redacted(item: Any, redactor: Redactor, *, keep: str | None = None) -> tuple[Any, int]:
    """``item`` with tokens in its text replaced; ``keep`` names a field left
    as it is (the environment's own token, which goes to the secret table)."""
    if not isinstance(item, dict) or not any(t.encode() in _encode(item) for t in redactor.tokens):
        return item, 0
    kept = {keep: item[keep]} if keep is not None and keep in item else {}
    rest = {k: v for k, v in item.items() if k != keep}
    cleaned, count = redactor.value(rest)
    return {**cleaned, **kept}, count


def _prepare_items(
    items: list[Any],
    kind: str,
    check: Callable[[Any], list[str]],
    mapper: Callable[[dict[str, Any]], Any],
    report: ImportReport,
    redactor: Redactor,
    *,
    redact: Callable[[Any], tuple[Any, int]],
) -> list[Any]:
    counts = report.tasks if kind == "task" else report.environments
    first_index: dict[str, int] = {}
    out = []
    for index, item in enumerate(items):
        item, replaced = redact(item)
        raw_id = item.get("id") if isinstance(item, dict) else None
        item_id = raw_id if isinstance(raw_id, str) else None
        problems = check(item)
        if not problems and item_id in first_index:
            problems = [f"the same id as {kind} {first_index[item_id]}; only the first is imported"]
        if not problems:
            try:
                mapped = mapper(item)
            except ValidationError as exc:
                problems = [str(exc)]
        if problems:
            counts.skipped += 1
            report.skipped.append(
                Skipped(
                    kind=kind,
                    index=index,
                    id=redactor.text(item_id)[0] if item_id else None,
                    reason=redactor.text("; ".join(problems))[0],
                )
            )
            continue
        first_index[item_id] = index
        if replaced:
            report.warnings.append(f"{kind} {item_id}: {replaced} GitHub token(s) in its text replaced by {MARK}")
        out.append(mapped)
    return out
