"""``syncstore tasks ...``"""

from __future__ import annotations

import click

import syncstore
from syncstore import schema
from syncstore.cli.common import json_option, with_store
from syncstore.cli.output import emit_json, table


@click.group()
def tasks() -> None:
    """Create, list, show, update and delete tasks."""


@tasks.command("add")
@click.argument("title")
@click.option("--description", default="", help="What the task is about.")
@click.option("--status", type=click.Choice(schema.TASK_STATUSES), default="pending", show_default=True)
@click.option("--priority", type=click.Choice(schema.TASK_PRIORITIES), default="medium", show_default=True)
@click.option("--repository", default="", help="The repository it concerns, e.g. octo/app.")
@click.option("--branch", default="", help="The branch it works on.")
@click.option("--mode", type=click.Choice(schema.TASK_MODES), default="code", show_default=True)
@json_option
@with_store
def add(store: syncstore.Store, title: str, as_json: bool, **fields: str) -> None:
    """Add a task; prints its id."""
    task = store.tasks.create(title, **fields)
    emit_json(task) if as_json else click.echo(task.id)


@tasks.command("list")
@click.option("--status", type=click.Choice(schema.TASK_STATUSES), help="Only tasks with this status.")
@click.option("--repository", help="Only tasks of this repository.")
@click.option("--archived/--not-archived", "is_archived", default=None, help="Only archived, or only not archived, tasks.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True, help="At most this many.")
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many first (for paging).")
@json_option
@with_store
def list_(store: syncstore.Store, as_json: bool, limit: int, offset: int, **filters: object) -> None:
    """List tasks, newest first."""
    found = store.tasks.list(limit=limit, offset=offset, order_by="created_at", descending=True, **filters)
    if as_json:
        emit_json(found)
        return
    table(None, ["id", "status", "priority", "repository", "title"], ((t.id, t.status, t.priority, t.repository, t.title[:60]) for t in found))


@tasks.command("show")
@click.argument("task_id")
@json_option
@with_store
def show(store: syncstore.Store, task_id: str, as_json: bool) -> None:
    """Show a task and its messages."""
    task = store.tasks.get(task_id)
    messages = store.messages.for_task(task_id)
    if as_json:
        emit_json({"task": task, "messages": messages})
        return
    for field, value in syncstore.records.to_dict(task).items():
        click.echo(f"{field:15} {value}")
    if messages:
        click.echo("")
        table("messages", ["#", "role", "type", "content"], ((m.position, m.role, m.type, m.content[:80]) for m in messages))


@tasks.command("update")
@click.argument("task_id")
@click.option("--title", help="A new title.")
@click.option("--description", help="A new description.")
@click.option("--status", type=click.Choice(schema.TASK_STATUSES))
@click.option("--priority", type=click.Choice(schema.TASK_PRIORITIES))
@click.option("--repository", help="A new repository.")
@click.option("--branch", help="A new branch.")
@click.option("--archived/--not-archived", "is_archived", default=None, help="Archive the task, or bring it back.")
@json_option
@with_store
def update(store: syncstore.Store, task_id: str, as_json: bool, **fields: object) -> None:
    """Change some fields of a task."""
    changes = {k: v for k, v in fields.items() if v is not None}
    task = store.tasks.update(task_id, **changes)
    emit_json(task) if as_json else click.echo(f"updated {task.id}")


@tasks.command("delete")
@click.argument("task_id")
@with_store
def delete(store: syncstore.Store, task_id: str) -> None:
    """Delete a task (a tombstone that syncs)."""
    store.tasks.delete(task_id)
    click.echo(f"deleted {task_id}")


@tasks.command("message")
@click.argument("task_id")
@click.argument("content")
@click.option("--role", type=click.Choice(schema.MESSAGE_ROLES), default="user", show_default=True)
@with_store
def message(store: syncstore.Store, task_id: str, content: str, role: str) -> None:
    """Append a message to a task's chat log."""
    msg = store.messages.add(task_id, role, content)
    click.echo(msg.id)
