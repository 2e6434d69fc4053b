"""``syncstore debug ...``: look back at an execution step by step.

``timeline`` draws it (or writes one self-contained HTML file), ``replay``
re-derives every state from the records without running anything, ``state``
prints the state at one step, ``diff`` names where two executions part, and
``fork`` starts a new execution from a step with a changed input.
"""

from __future__ import annotations

import click

import syncstore
from syncstore import schema
from syncstore.cli.common import json_option, with_store
from syncstore.cli.output import console, emit_json, table
from syncstore.cli.workflows import load, module_option, parse_json, say
from syncstore.workflows import timeline as timelines


@click.group()
def debug() -> None:
    """Time travel: timeline, replay, state, diff, fork."""


@debug.command("timeline")
@click.argument("execution_id")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, writable=True), help="Write one self-contained HTML file.")
@with_store
def timeline(store: syncstore.Store, execution_id: str, html_file: str | None) -> None:
    """Draw an execution's steps on a time axis (any execution with snapshots)."""
    if html_file:
        click.echo(store.workflows.write_html(execution_id, html_file))
        return
    timelines.render(store.workflows.timeline(execution_id), console=console())


@debug.command("replay")
@click.argument("execution_id")
@json_option
@with_store
def replay(store: syncstore.Store, execution_id: str, as_json: bool) -> None:
    """Replay from recorded outputs (no step runs) and check the result matches the record."""
    result = store.workflows.replay(execution_id)
    if as_json:
        emit_json({
            "execution_id": result.execution_id,
            "complete": result.complete,
            "stopped_at": result.stopped_at,
            "deterministic": result.deterministic,
            "mismatches": result.mismatches,
            "output": result.output,
            "steps": [s._asdict() for s in result.steps],
        })
        return
    table(f"replay of {execution_id}", ["#", "step", "kind", "output", "matches record"], (
        (s.number, s.id, s.kind, schema.encode_json(s.output)[:60], {True: "yes", False: "NO", None: "-"}[s.matches_record])
        for s in result.steps
    ))
    if result.complete:
        click.echo(f"replayed to the end; output {schema.encode_json(result.output)[:200]}")
    else:
        click.echo(f"replayed up to step {result.stopped_at}, which has no record yet")
    if result.deterministic:
        click.echo("deterministic: every replayed state matches the recorded one")
    for problem in result.mismatches:
        click.echo(f"MISMATCH: {problem}")
    if not result.deterministic:
        raise SystemExit(1)


@debug.command("state")
@click.argument("execution_id")
@click.argument("step", type=click.IntRange(min=0))
@with_store
def state(store: syncstore.Store, execution_id: str, step: int) -> None:
    """Print the workflow state as it was when STEP ended (0: the start)."""
    emit_json(store.workflows.state_at(execution_id, step))


@debug.command("diff")
@click.argument("a")
@click.argument("b")
@json_option
@with_store
def diff(store: syncstore.Store, a: str, b: str, as_json: bool) -> None:
    """Compare two executions step by step and name the first divergence."""
    result = store.workflows.diff(a, b)
    if as_json:
        emit_json({
            "a": a,
            "b": b,
            "input_differs": result.input_differs,
            "first_divergence": None if result.first_divergence is None else result.first_divergence._asdict(),
            "steps": [s._asdict() for s in result.steps],
        })
        return
    table(f"{a} vs {b}", ["step", "a", "b", "difference"], (
        (s.id, _cell(s.a), _cell(s.b), s.reason or "") for s in result.steps
    ))
    if result.input_differs:
        click.echo("the inputs differ")
    click.echo(result.describe())


def _cell(view: object) -> str:
    if view is None:
        return "-"
    status, output = view  # type: ignore[misc]
    return f"{status} {schema.encode_json(output)[:40]}"


@debug.command("fork")
@click.argument("execution_id")
@click.option("--from-step", "from_step", type=click.IntRange(min=1), required=True, help="The first step to run anew.")
@click.option("--input", "input_json", metavar="JSON", help="A new input (default: the original's).")
@click.option("--state", "state_json", metavar="JSON", help="An object merged into the state where the fork begins.")
@click.option("--run/--no-run", default=None, help="Run it now (the default when --module is given).")
@module_option
@json_option
@with_store
def fork(store: syncstore.Store, execution_id: str, from_step: int, input_json: str | None, state_json: str | None, run: bool | None, modules: tuple[str, ...], as_json: bool) -> None:
    """Start a new execution that keeps the steps before --from-step and runs the rest anew."""
    load(modules)
    options = {}
    if input_json is not None:
        options["input"] = parse_json(input_json, "--input")
    forked = store.workflows.fork(execution_id, from_step=from_step, state=parse_json(state_json, "--state"), **options)
    if run if run is not None else bool(modules):
        forked = store.workflows.run(forked.id)
    say(forked, as_json)
