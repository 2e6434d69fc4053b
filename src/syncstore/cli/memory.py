"""``syncstore memory ...``: add, search, list, consolidate and expire agent memories.

The embedder is chosen on the group (or by environment), because a search
only finds memories embedded with the same model: ``hashing`` (default,
offline, lexical), ``minilm`` (the ``embeddings`` extra), or ``http`` (an
OpenAI-compatible endpoint; its key comes only from
``SYNCSTORE_EMBEDDING_KEY``, never from the command line).
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import click

import syncstore
from syncstore import schema
from syncstore.cli.common import json_option, with_store
from syncstore.cli.output import emit_json, table
from syncstore.errors import ValidationError
from syncstore.memory import HashingEmbedder, HttpEmbedder, Memory, SentenceTransformerEmbedder
from syncstore.memory.engines import ENGINES
from syncstore.memory.remote import search_server

EMBEDDERS = ("hashing", "minilm", "http")
_SETTINGS = "syncstore.memory.settings"


@click.group()
@click.option(
    "--embedder",
    type=click.Choice(EMBEDDERS),
    default="hashing",
    show_default=True,
    envvar="SYNCSTORE_EMBEDDER",
    help="How texts become vectors (or set SYNCSTORE_EMBEDDER).",
)
@click.option("--embedding-url", envvar="SYNCSTORE_EMBEDDING_URL", help="API root for --embedder http, e.g. http://localhost:8080/v1.")
@click.option("--embedding-model", envvar="SYNCSTORE_EMBEDDING_MODEL", help="Model name for --embedder http.")
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    default="auto",
    show_default=True,
    envvar="SYNCSTORE_MEMORY_ENGINE",
    help="Search engine: in-memory numpy, sqlite-vec, hnsw (approximate, for large sets), or chosen by size.",
)
@click.pass_context
def memory(ctx: click.Context, embedder: str, embedding_url: str | None, embedding_model: str | None, engine: str) -> None:
    """Agent memory: add, search, list, consolidate, expire."""
    ctx.meta[_SETTINGS] = {"embedder": embedder, "url": embedding_url, "model": embedding_model, "engine": engine}


def _memory(store: syncstore.Store) -> Memory:
    """A Memory over the store with the group's embedder and engine; closed with the command."""
    ctx = click.get_current_context()
    settings = ctx.meta[_SETTINGS]
    if settings["embedder"] == "http":
        if not settings["url"] or not settings["model"]:
            raise ValidationError("--embedder http needs --embedding-url and --embedding-model")
        embedder: Any = HttpEmbedder(
            base_url=settings["url"], model=settings["model"], api_key=os.environ.get("SYNCSTORE_EMBEDDING_KEY")
        )
        ctx.call_on_close(embedder.close)
    elif settings["embedder"] == "minilm":
        embedder = SentenceTransformerEmbedder()
    else:
        embedder = HashingEmbedder()
    opened = Memory(store, embedder=embedder, engine=settings["engine"])
    ctx.call_on_close(opened.close)
    return opened


def _filter_options(fn: Any) -> Any:
    for decorator in reversed(
        (
            click.option("--agent", "agent_id", help="Only this agent's memories."),
            click.option("--type", "memory_type", multiple=True, type=click.Choice(schema.MEMORY_TYPES), help="Only these types (repeat)."),
            click.option("--tag", "tags", multiple=True, help="Only memories with every one of these tags (repeat)."),
            click.option("--min-importance", type=click.IntRange(1, 10), help="Only memories at least this important."),
            click.option("--include-inactive", is_flag=True, help="Also deactivated memories."),
            click.option("--include-expired", is_flag=True, help="Also expired memories."),
        )
    ):
        fn = decorator(fn)
    return fn


def _filters(memory_type: tuple[str, ...], tags: tuple[str, ...], **rest: Any) -> dict[str, Any]:
    return {"memory_type": list(memory_type) or None, "tags": list(tags) or None, **rest}


@memory.command("add")
@click.argument("content")
@click.option("--agent", "agent_id", required=True, help="The agent the memory belongs to.")
@click.option("--type", "memory_type", type=click.Choice(schema.MEMORY_TYPES), default="knowledge_base", show_default=True)
@click.option("--key", "context_key", help="Context key: adding with a key the agent used rewrites that memory.")
@click.option("--importance", type=click.IntRange(1, 10), default=5, show_default=True)
@click.option("--tag", "tags", multiple=True, help="A tag (repeat for more).")
@click.option("--expires-in", type=click.IntRange(min=1), help="Seconds until it expires.")
@json_option
@with_store
def add(store: syncstore.Store, content: str, agent_id: str, tags: tuple[str, ...], expires_in: int | None, as_json: bool, **fields: Any) -> None:
    """Remember CONTENT; prints the memory's id."""
    ttl = dt.timedelta(seconds=expires_in) if expires_in else None
    added = _memory(store).add(agent_id, content, tags=list(tags), ttl=ttl, **fields)
    emit_json(added) if as_json else click.echo(added.id)


@memory.command("search")
@click.argument("query")
@click.option("-k", "--k", "k", type=click.IntRange(min=0), default=10, show_default=True, help="How many results.")
@_filter_options
@click.option("--server", "server_url", help="Search the tenant's synced memories on this sync server (ws://host:port) instead of the replica.")
@click.option("--token", envvar="SYNCSTORE_TOKEN", help="The token for --server (or set SYNCSTORE_TOKEN).")
@json_option
@click.pass_obj
def search(
    obj: Any, query: str, k: int, as_json: bool, memory_type: tuple[str, ...], tags: tuple[str, ...],
    server_url: str | None, token: str | None, **rest: Any,
) -> None:
    """Find the memories closest to QUERY, best first (in the replica, or on a server with --server)."""
    if server_url is not None:
        _search_server(server_url, token, query, k, as_json, _filters(memory_type, tags, **rest))
        return
    hits = _memory(obj.store()).search(query, k=k, **_filters(memory_type, tags, **rest))
    if as_json:
        emit_json(hits)
        return
    table(
        None,
        ["score", "similarity", "id", "agent", "type", "imp", "content"],
        ((f"{h.score:.3f}", f"{h.similarity:.3f}", h.memory.id, h.memory.agent_id, h.memory.memory_type, h.memory.importance, h.memory.content[:60]) for h in hits),
    )


def _search_server(url: str, token: str | None, query: str, k: int, as_json: bool, filters: dict[str, Any]) -> None:
    if not token:
        raise ValidationError("--server needs a token: --token or SYNCSTORE_TOKEN")
    if click.get_current_context().meta[_SETTINGS]["embedder"] != "hashing":
        raise ValidationError("the server embeds text queries with the hashing model only")
    found = search_server(url, token=token, query=query, k=k, **filters)
    if as_json:
        emit_json(found)
        return
    table(
        None,
        ["score", "similarity", "id", "agent", "type", "imp", "content"],
        (
            (f"{h.score:.3f}", f"{h.similarity:.3f}", h.id, h.memory.get("agent_id"), h.memory.get("memory_type"), h.memory.get("importance"), str(h.memory.get("content", ""))[:60])
            for h in found.hits
        ),
    )


@memory.command("list")
@_filter_options
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0)
@json_option
@with_store
def list_(store: syncstore.Store, as_json: bool, memory_type: tuple[str, ...], tags: tuple[str, ...], **rest: Any) -> None:
    """List memories, newest first (reads are not counted)."""
    found = _memory(store).list(**_filters(memory_type, tags, **rest))
    if as_json:
        emit_json(found)
        return
    table(
        None,
        ["id", "agent", "type", "imp", "tags", "content"],
        ((m.id, m.agent_id, m.memory_type, m.importance, ",".join(m.tags), m.content[:60]) for m in found),
    )


@memory.command("consolidate")
@click.argument("agent_id")
@click.option("--older-than-days", type=click.FloatRange(min=0), default=7.0, show_default=True, help="Untouched for this long.")
@click.option("--max-importance", type=click.IntRange(1, 10), default=4, show_default=True)
@click.option("--min-memories", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--delete", is_flag=True, help="Delete the folded memories instead of deactivating them.")
@json_option
@with_store
def consolidate(store: syncstore.Store, agent_id: str, older_than_days: float, as_json: bool, **options: Any) -> None:
    """Fold AGENT_ID's old, unimportant memories into one summary (extractive)."""
    summary = _memory(store).consolidate(agent_id, older_than=dt.timedelta(days=older_than_days), **options)
    if as_json:
        emit_json(summary)
    elif summary is None:
        click.echo("nothing to consolidate")
    else:
        click.echo(f"{summary.id} folds {summary.context['consolidated_count']} memories")


@memory.command("expire")
@click.option("--agent", "agent_id", help="Only this agent's memories.")
@click.option("--delete", is_flag=True, help="Delete expired memories instead of deactivating them.")
@json_option
@with_store
def expire(store: syncstore.Store, agent_id: str | None, delete: bool, as_json: bool) -> None:
    """Deactivate (or delete) every memory past its expiry; the same as ``sweep``."""
    count = _memory(store).sweep(agent_id=agent_id, delete=delete)
    emit_json({"expired": count, "deleted": delete}) if as_json else click.echo(f"{'deleted' if delete else 'deactivated'} {count}")


memory.add_command(expire, name="sweep")
