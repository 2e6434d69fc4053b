"""``syncstore import ...``: the legacy browser export, and undoing an import.

Each command calls one function of :mod:`syncstore.legacy`; this module only
shows the report. Reports never hold a GitHub token, so nothing printed here
can show one.
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import syncstore
from syncstore.cli.common import Context, json_option, with_store
from syncstore.cli.output import console, emit_json
from syncstore.legacy import (
    ImportReport,
    IntegrityCheckError,
    RollbackReport,
    StrictImportError,
    import_legacy,
    list_imports,
    rollback_import,
)

MAX_ROWS = 50  # rows of a detail table shown to a person; --json has them all


@click.group(name="import")
def import_group() -> None:
    """Import the legacy browser export; list or roll back imports."""


@import_group.command("legacy")
@click.argument("export", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Show what would be imported; write nothing.")
@click.option("--strict", is_flag=True, help="Import nothing if any item is invalid.")
@click.option(
    "--drop-secrets",
    is_flag=True,
    help="Discard GitHub tokens instead of keeping them in the local secret table.",
)
@json_option
@click.pass_obj
def legacy(obj: Context, export: str, dry_run: bool, strict: bool, drop_secrets: bool, as_json: bool) -> None:
    """Import EXPORT.json, a localStorage export of the old web app.

    Importing the same file again changes nothing. Tokens never go to a synced
    table and are never printed.
    """
    with _store_for(obj, dry_run=dry_run) as store, _progress(enabled=not as_json) as progress:
        try:
            report = import_legacy(store, export, dry_run=dry_run, strict=strict, drop_secrets=drop_secrets, progress=progress)
        except (StrictImportError, IntegrityCheckError) as exc:
            emit_json(exc.report) if as_json else show_import(exc.report)
            raise
    emit_json(report) if as_json else show_import(report)


@import_group.command("rollback")
@click.argument("import_id")
@json_option
@with_store
def rollback(store: syncstore.Store, import_id: str, as_json: bool) -> None:
    """Remove what one import added, except rows edited since."""
    report = rollback_import(store, import_id)
    emit_json(report) if as_json else show_rollback(report)


@import_group.command("list")
@json_option
@with_store
def list_(store: syncstore.Store, as_json: bool) -> None:
    """The imports made into this replica, oldest first."""
    found = list_imports(store)
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo("no imports yet")
    for r in found:
        undone = f"  rolled back {r.rolled_back_at}" if r.rolled_back_at else ""
        click.echo(
            f"{r.id}  {r.imported_at}  {r.tasks} tasks, {r.environments} environments, "
            f"{r.messages} messages  {r.source}{undone}"
        )


@contextlib.contextmanager
def _store_for(obj: Context, *, dry_run: bool) -> Iterator[syncstore.Store]:
    """The replica; for a dry run against a file that does not exist yet, an
    empty one in memory, so that a dry run creates no file either."""
    if dry_run and obj.db != ":memory:" and not os.path.exists(obj.db):
        with syncstore.open(":memory:") as empty:
            yield empty
        return
    yield obj.store()


@contextlib.contextmanager
def _progress(*, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr when it is a terminal; nothing otherwise."""
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield None
        return
    columns = (TextColumn("importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        job = bar.add_task("import", total=None)

        def update(done: int, total: int) -> None:
            bar.update(job, completed=done, total=total)

        yield update


def show_import(report: ImportReport) -> None:
    if report.dry_run:
        click.echo("dry run: nothing was written; this is what an import would do")
    elif report.import_id is None:
        click.echo("nothing to import: everything in the export is already here")
    else:
        click.echo(f"import {report.import_id}  (undo with: syncstore import rollback {report.import_id})")
    click.echo(f"source {report.source}")
    _table(
        None,
        ["", "in export", "imported", "updated", "unchanged", "kept", "skipped"],
        [
            (name, c.source, c.imported, c.updated, c.unchanged, c.kept, c.skipped)
            for name, c in (("tasks", report.tasks), ("environments", report.environments))
        ],
    )
    m = report.messages
    click.echo(
        f"messages: {m.imported} imported, {m.present} already here, of {m.source}; "
        f"{m.shell_pairs} shell calls paired with their output; {m.duplicates} exact duplicates"
    )
    s = report.secrets
    if s.dropped:
        click.echo(f"secrets: {s.dropped} GitHub tokens dropped (--drop-secrets)")
    else:
        click.echo(
            f"secrets: {s.found} GitHub tokens: {s.stored} stored, {s.replaced} replaced, {s.unchanged} unchanged "
            "in the local secret table (never synced)"
        )
    _details("skipped", ["kind", "#", "id", "reason"], [(x.kind, x.index, x.id, x.reason) for x in report.skipped])
    _details("ignored keys", ["key", "reason"], [(x.key, x.reason) for x in report.ignored_keys])
    _details("kept as they are here", ["table", "id", "reason"], [(x.table, x.id, x.reason) for x in report.kept])
    _details(
        "exact duplicate messages (imported, marked duplicate_of)",
        ["task", "message", "same as"],
        [(x.task_id, x.position, x.duplicate_of) for x in report.duplicates],
    )
    for warning in report.warnings[:MAX_ROWS]:
        click.echo(f"warning: {warning}")
    if len(report.warnings) > MAX_ROWS:
        click.echo(f"... and {len(report.warnings) - MAX_ROWS} more warnings (--json lists them all)")
    if report.integrity is None:
        click.echo("integrity check: not run (dry run)")
    else:
        click.echo(f"integrity check: {'ok' if report.integrity.ok else 'FAILED'}")
        for line in report.integrity.checked:
            click.echo(f"  {line}")
        for line in report.integrity.problems:
            click.echo(f"  problem: {line}")


def show_rollback(report: RollbackReport) -> None:
    click.echo(f"rolled back import {report.import_id}")
    click.echo(f"removed {len(report.removed)} rows, restored {len(report.restored)}, kept {len(report.kept)}")
    _details("removed", ["table", "id"], [(x.table, x.id) for x in report.removed])
    _details("restored to their earlier values", ["table", "id"], [(x.table, x.id) for x in report.restored])
    _details("kept", ["table", "id", "reason"], [(x.table, x.id, x.reason) for x in report.kept])
    if report.messages_kept:
        click.echo(
            f"{report.messages_kept} messages stay (task messages are append-only); "
            "importing the same export again brings their tasks back with them"
        )
    click.echo(f"secrets removed: {report.secrets_removed}")


def _details(title: str, columns: list[str], rows: list[tuple]) -> None:
    if not rows:
        return
    _table(title, columns, rows[:MAX_ROWS])
    if len(rows) > MAX_ROWS:
        click.echo(f"... and {len(rows) - MAX_ROWS} more (--json lists them all)")


def _table(title: str | None, columns: list[str], rows: list[tuple]) -> None:
    """A table whose cells wrap instead of being cut: ids must stay whole."""
    out = Table(title=title, title_justify="left")
    for name in columns:
        out.add_column(name, overflow="fold")
    for row in rows:
        out.add_row(*["" if v is None else str(v) for v in row])
    console().print(out)
