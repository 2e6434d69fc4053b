"""``syncstore workflows ...``: definitions, executions, and the requests that steer them.

Running steps needs their code: ``--module`` imports a module (dotted name or
``.py`` path, repeatable) whose ``@step`` functions and ``workflow(...)``
declarations register themselves. Without it, ``start`` only records a pending
execution, and ``resume``/``signal`` only record the request: a process with
the code (``recover``, or the agent itself) runs it next.
"""

from __future__ import annotations

from typing import Any

import click
import msgspec

import syncstore
from syncstore import schema
from syncstore.cli.common import json_option, with_store
from syncstore.cli.output import emit_json, table
from syncstore.errors import ValidationError
from syncstore.workflows import ExecutionRecord, load_module
from syncstore.workflows.control import DECISIONS


def module_option(fn: Any) -> Any:
    return click.option(
        "--module",
        "modules",
        multiple=True,
        metavar="MODULE",
        help="Import MODULE (dotted name or .py path) to register its steps; repeatable.",
    )(fn)


def load(modules: tuple[str, ...]) -> None:
    for target in modules:
        load_module(target)


def parse_json(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise ValidationError(f"{what} is not valid JSON: {exc}") from None


def say(run: ExecutionRecord, as_json: bool) -> None:
    if as_json:
        emit_json(run)
        return
    line = f"{run.id} {run.status}"
    if run.status == "waiting":
        line += f" (for signal {run.metadata.get('waiting_for', {}).get('signal')!r})"
    if run.error:
        line += f": {run.error}"
    click.echo(line)


@click.group()
def workflows() -> None:
    """Durable workflows: list, show, start, pause, resume, cancel, signal."""


@workflows.command("list")
@click.option("--definitions", is_flag=True, help="List workflow definitions instead of executions.")
@click.option("--status", type=click.Choice(schema.WORKFLOW_STATUSES))
@click.option("--workflow", "name", help="Only executions of this workflow name.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True)
@json_option
@with_store
def list_(store: syncstore.Store, definitions: bool, status: str | None, name: str | None, limit: int, as_json: bool) -> None:
    """List executions, newest first (or definitions with --definitions)."""
    flows = store.workflows
    if definitions:
        found = flows.definitions(name)
        if as_json:
            emit_json(found)
            return
        table(None, ["name", "version", "steps", "active", "id", "description"], (
            (w.name, w.version, len(w.definition.get("steps", [])), w.is_active, w.id, w.description[:50]) for w in found
        ))
        return
    runs = flows.list(status=status, workflow=name, limit=limit)
    if as_json:
        emit_json(runs)
        return
    names = {w.id: f"{w.name} v{w.version}" for w in flows.definitions()}
    table(None, ["id", "workflow", "status", "step", "started", "error"], (
        (r.id, names.get(r.workflow_id, r.workflow_id), r.status, f"{r.current_step}/{r.total_steps or '?'}",
         r.started_at.isoformat(timespec="seconds") if r.started_at else "", (r.error or "")[:40])
        for r in runs
    ))


@workflows.command("show")
@click.argument("target")
@click.option("--version", type=int, help="With a workflow name: that version.")
@json_option
@with_store
def show(store: syncstore.Store, target: str, version: int | None, as_json: bool) -> None:
    """Show an execution (by id) with its steps, or a workflow definition (by name)."""
    flows = store.workflows
    if store.get("workflow_executions", target) is None:
        found = flows.definition(target, version)
        if as_json:
            emit_json(found)
            return
        for field, value in syncstore.records.to_dict(found).items():
            if field != "definition":
                click.echo(f"{field:12} {value}")
        click.echo(f"{'definition':12} {schema.encode_json(found.definition)}")
        return
    run = flows.get(target)
    steps = flows.timeline(target).rows
    if as_json:
        emit_json({"execution": run, "steps": [
            {"number": r.number, "id": r.id, "kind": r.kind, "status": r.status, "output": r.output, "error": r.error}
            for r in steps
        ]})
        return
    for field, value in syncstore.records.to_dict(run).items():
        if field not in ("state", "output", "input"):
            click.echo(f"{field:18} {value}")
    click.echo(f"{'input':18} {schema.encode_json(run.input)}")
    click.echo(f"{'output':18} {schema.encode_json(run.output)}")
    click.echo("")
    table("steps", ["#", "step", "kind", "status", "output"], (
        (r.number, "  " * r.depth + r.id, r.kind, r.status, "" if r.output is None else schema.encode_json(r.output)[:60])
        for r in steps
    ))


@workflows.command("start")
@click.argument("name")
@click.option("--version", type=int, help="The version to start (default: the newest active one).")
@click.option("--input", "input_json", metavar="JSON", help="The execution's input, as JSON.")
@click.option("--run/--no-run", default=None, help="Run it now (the default when --module is given).")
@module_option
@json_option
@with_store
def start(store: syncstore.Store, name: str, version: int | None, input_json: str | None, run: bool | None, modules: tuple[str, ...], as_json: bool) -> None:
    """Start an execution of workflow NAME; prints its id and status."""
    load(modules)
    flows = store.workflows
    if run is None:
        run = bool(modules)
    payload = parse_json(input_json, "--input")
    result = flows.execute(name, version=version, input=payload, triggered_by="cli") if run else flows.start(
        name, version=version, input=payload, triggered_by="cli"
    )
    say(result, as_json)


@workflows.command("pause")
@click.argument("execution_id")
@json_option
@with_store
def pause(store: syncstore.Store, execution_id: str, as_json: bool) -> None:
    """Pause at the next step boundary (from any replica)."""
    say(store.workflows.pause(execution_id), as_json)


@workflows.command("resume")
@click.argument("execution_id")
@module_option
@json_option
@with_store
def resume(store: syncstore.Store, execution_id: str, modules: tuple[str, ...], as_json: bool) -> None:
    """Resume a paused execution (and run it now, with --module)."""
    load(modules)
    result = store.workflows.resume(execution_id)
    if modules:
        result = store.workflows.run(execution_id)
    say(result, as_json)


@workflows.command("cancel")
@click.argument("execution_id")
@json_option
@with_store
def cancel(store: syncstore.Store, execution_id: str, as_json: bool) -> None:
    """Cancel at the next step boundary (at once when nothing runs it)."""
    say(store.workflows.cancel(execution_id), as_json)


@workflows.command("signal")
@click.argument("execution_id")
@click.argument("name")
@click.option("--decision", type=click.Choice(DECISIONS), default="approve", show_default=True)
@click.option("--reject", is_flag=True, help="Short for --decision reject.")
@click.option("--data", "data_json", metavar="JSON", help="Data that goes with the decision, as JSON.")
@click.option("--by", "sent_by", help="Who decides (recorded with the signal).")
@module_option
@json_option
@with_store
def signal(store: syncstore.Store, execution_id: str, name: str, decision: str, reject: bool, data_json: str | None, sent_by: str | None, modules: tuple[str, ...], as_json: bool) -> None:
    """Send signal NAME (approve or reject, with data) to a waiting execution."""
    load(modules)
    sent = store.workflows.signal(
        execution_id, name, decision="reject" if reject else decision, data=parse_json(data_json, "--data"), sent_by=sent_by
    )
    if modules:
        say(store.workflows.run(execution_id), as_json)
    elif as_json:
        emit_json(sent)
    else:
        click.echo(f"signal {name} ({sent.output['decision']}) sent to {execution_id}")


@workflows.command("recover")
@module_option
@json_option
@with_store
def recover(store: syncstore.Store, modules: tuple[str, ...], as_json: bool) -> None:
    """Run every execution that should be running and that no live process holds."""
    load(modules)
    done = store.workflows.recover()
    if as_json:
        emit_json(done)
        return
    for run in done:
        say(run, False)
    if not done:
        click.echo("nothing to recover")


@workflows.command("define")
@click.argument("name")
@click.argument("definition_file", type=click.File("r"))
@click.option("--version", type=int, default=1, show_default=True)
@click.option("--description", default="")
@json_option
@with_store
def define(store: syncstore.Store, name: str, definition_file: Any, version: int, description: str, as_json: bool) -> None:
    """Register a workflow version from a JSON definition file ('-' for stdin)."""
    found = store.workflows.define(name, definition_file.read(), version=version, description=description)
    emit_json(found) if as_json else click.echo(f"{found.name} v{found.version} {found.id}")
