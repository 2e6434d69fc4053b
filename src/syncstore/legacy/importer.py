"""``import_legacy``: a localStorage export into a replica, in one transaction.

The steps, each in its own module: read the file and find the stores in it
(:mod:`.envelope`); check, clean and map every item (:mod:`.prepare`); compare
with what the replica holds (:mod:`.plan`); write (:mod:`.apply`); check the
result against the source (:mod:`.integrity`). Everything from the plan to the
check runs in one transaction, so an error anywhere (a bad row, a full disk,
an interrupt, a failed check) leaves the replica as it was.
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any, Callable, Mapping

from syncstore.core.hlc import wall_ms
from syncstore.core.ids import uuid7
from syncstore.legacy import history
from syncstore.legacy.apply import apply
from syncstore.legacy.envelope import decode_envelope, read_source
from syncstore.legacy.errors import IntegrityCheckError, StrictImportError
from syncstore.legacy.integrity import check
from syncstore.legacy.plan import Plan, make_plan
from syncstore.legacy.prepare import prepare
from syncstore.legacy.report import ImportReport, Ignored
from syncstore.legacy.redact import scrub
from syncstore.replica.store import Replica


def import_legacy(
    store: Replica,
    path_or_data: str | os.PathLike[str] | bytes | Mapping[str, Any],
    *,
    dry_run: bool = False,
    strict: bool = False,
    drop_secrets: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import a legacy browser export; returns what was (or, with ``dry_run``,
    would be) done.

    ``path_or_data``: a file path, the export's JSON as bytes, or the export
    already decoded. ``strict``: any invalid item aborts the whole import
    (:class:`StrictImportError`, nothing written). ``drop_secrets``: GitHub
    tokens are discarded instead of kept in the local secret table.
    ``progress(done, total)`` hears about items as they are written.

    Importing the same export again writes nothing. Raises
    :class:`IntegrityCheckError` (nothing written) if the replica does not
    match the source after writing.
    """
    # Decoding an export makes millions of small containers, none in a cycle;
    # the cyclic collector would scan them again and again (ten times the
    # decoding time for a large file), so it waits until the import is done.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _import(
            store, path_or_data, dry_run=dry_run, strict=strict, drop_secrets=drop_secrets, progress=progress
        )
    finally:
        if collecting:
            gc.enable()


def _import(
    store: Replica,
    path_or_data: str | os.PathLike[str] | bytes | Mapping[str, Any],
    *,
    dry_run: bool,
    strict: bool,
    drop_secrets: bool,
    progress: Callable[[int, int], None] | None,
) -> ImportReport:
    started = time.perf_counter()
    source = read_source(path_or_data)
    envelope = decode_envelope(source.data)
    source.data = None  # the decoded file: the envelope holds what is needed of it
    report = ImportReport(source=source.label, dry_run=dry_run, strict=strict, drop_secrets=drop_secrets)
    prepared = prepare(envelope, source.raw, report, now_ms=wall_ms())
    # The file and its decoded items can be large; what is left to do needs the
    # mapped rows only. Freed now, their memory serves the writes that follow.
    source.raw = b""
    envelope.tasks = []
    envelope.environments = []
    report.ignored_keys = [Ignored(key=scrub(i.key), reason=i.reason) for i in envelope.ignored]
    report.skipped = [*envelope.problems, *report.skipped]
    report.warnings = [*envelope.warnings, *report.warnings]
    if strict and report.skipped:
        report.seconds = time.perf_counter() - started
        raise StrictImportError(report)

    if dry_run:
        plan = make_plan(store, prepared.tasks, prepared.environments, drop_secrets=drop_secrets)
        _count(report, plan, drop_secrets=drop_secrets, found=report.secrets.found)
        report.seconds = time.perf_counter() - started
        return report

    with store.transaction():
        plan = make_plan(store, prepared.tasks, prepared.environments, drop_secrets=drop_secrets)
        _count(report, plan, drop_secrets=drop_secrets, found=report.secrets.found)
        if plan.writes:
            report.import_id = uuid7()
            history.start(
                store,
                report.import_id,
                source=source.label,
                sha256=source.sha256,
                options={"strict": strict, "drop_secrets": drop_secrets},
            )
            total = len(prepared.tasks) + len(prepared.environments)
            apply(store, plan, import_id=report.import_id, progress=progress, total=total)
        report.integrity = check(
            store,
            prepared.tasks,
            prepared.environments,
            deleted_here=plan.deleted_here,
            drop_secrets=drop_secrets,
        )
        report.seconds = time.perf_counter() - started
        if not report.integrity.ok:
            raise IntegrityCheckError(report)
        if report.import_id is not None:
            history.finish(store, report.import_id, report)
    return report


def _count(report: ImportReport, plan: Plan, *, drop_secrets: bool, found: int) -> None:
    """The plan's decisions as the report's numbers."""
    report.tasks.imported = len(plan.new_tasks) + len(plan.revived_tasks)
    report.environments.imported = len(plan.new_environments) + len(plan.revived_environments)
    for update in plan.updates:
        (report.tasks if update.table == "tasks" else report.environments).updated += 1
    report.tasks.unchanged = plan.unchanged["tasks"]
    report.environments.unchanged = plan.unchanged["environments"]
    for kept in plan.kept:
        (report.tasks if kept.table == "tasks" else report.environments).kept += 1
    report.kept = list(plan.kept)
    report.messages.present = plan.messages_present
    report.messages.imported = plan.messages_new
    report.secrets.stored = sum(1 for *_, outcome in plan.secrets if outcome == "stored")
    report.secrets.replaced = sum(1 for *_, outcome in plan.secrets if outcome == "replaced")
    report.secrets.unchanged = plan.secrets_unchanged
    report.secrets.dropped = found if drop_secrets else 0
