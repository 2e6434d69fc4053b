"""``syncstore environments ...``"""

from __future__ import annotations

import click

import syncstore
from syncstore.cli.common import json_option, with_store
from syncstore.cli.output import emit_json, table


@click.group()
def environments() -> None:
    """Add, list and activate environments."""


@environments.command("add")
@click.argument("name")
@click.option("--description", default="", help="What the environment is for.")
@click.option("--github-organization", default="", help="The GitHub organisation it works in.")
@click.option("--github-repository", default="", help="The repository it works on, e.g. octo/app.")
@json_option
@with_store
def add(store: syncstore.Store, name: str, as_json: bool, **fields: str) -> None:
    """Add an environment; prints its id."""
    env = store.environments.create(name, **fields)
    emit_json(env) if as_json else click.echo(env.id)


@environments.command("list")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True, help="At most this many.")
@json_option
@with_store
def list_(store: syncstore.Store, limit: int, as_json: bool) -> None:
    """List environments."""
    found = store.environments.list(limit=limit)
    if as_json:
        emit_json(found)
        return
    table(None, ["id", "active", "name", "repository"], ((e.id, "*" if e.is_active else "", e.name, e.github_repository) for e in found))


@environments.command("activate")
@click.argument("env_id")
@with_store
def activate(store: syncstore.Store, env_id: str) -> None:
    """Make an environment the active one (the others of its owner are deactivated)."""
    env = store.environments.activate(env_id)
    click.echo(f"active: {env.name} ({env.id})")
