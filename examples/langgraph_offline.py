"""A LangGraph agent on syncstore: checkpoints and long-term memory offline, synced later.

    .venv/bin/python examples/langgraph_offline.py                 # no network, no server
    .venv/bin/python examples/langgraph_offline.py --url ws://127.0.0.1:8765 --token $SYNCSTORE_TOKEN

The graph recalls what it knows about the user (SyncstoreStore: semantic
search with the offline hashing embedder), drafts an answer, stops for a
human's approval (an interrupt, saved by SyncstoreSaver), and on approval
remembers what it learned. Everything is written to ``langgraph.db`` (a
normal SQLite file) with change capture; given ``--url`` the replica then
syncs with a sync server, so a thread left for review (``--leave-for-review``)
can be approved on another machine (``--resume --thread ID --url ...`` there)
and the memory searched from anywhere. Run it twice: the second run remembers
the first.
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import os
import uuid
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore
from langgraph.types import Command, interrupt

import syncstore.aio
from syncstore.integrations.langgraph import SyncstoreSaver, SyncstoreStore


class State(TypedDict, total=False):
    user: str
    question: str
    recalled: list[str]
    draft: str
    approved: bool
    log: Annotated[list[str], operator.add]


async def recall(state: State, *, store: BaseStore) -> dict[str, Any]:
    hits = await store.asearch(("users", state["user"]), query=state["question"], limit=3)
    return {"recalled": [hit.value["text"] for hit in hits], "log": [f"recalled {len(hits)} memories"]}


async def draft(state: State) -> dict[str, Any]:
    style = " ".join(state["recalled"]) or "no known preferences"
    return {"draft": f"Answer to {state['question']!r} ({style})", "log": ["drafted"]}


async def review(state: State) -> dict[str, Any]:
    decision = interrupt({"draft": state["draft"]})  # waits for a human, for as long as it takes
    return {"approved": bool(decision.get("approved")), "log": [f"reviewed: approved={decision.get('approved')}"]}


async def remember(state: State, *, store: BaseStore) -> dict[str, Any]:
    if state["approved"]:
        await store.aput(("users", state["user"]), uuid.uuid4().hex, {"text": f"liked an answer about {state['question']}"})
    return {"log": ["remembered"]}


def build(checkpointer: Any, store: BaseStore) -> Any:
    builder = StateGraph(State)
    for name, node in (("recall", recall), ("draft", draft), ("review", review), ("remember", remember)):
        builder.add_node(name, node)
    builder.add_edge(START, "recall")
    builder.add_edge("recall", "draft")
    builder.add_edge("draft", "review")
    builder.add_edge("review", "remember")
    builder.add_edge("remember", END)
    return builder.compile(checkpointer=checkpointer, store=store)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="langgraph.db", help="the replica file")
    parser.add_argument("--thread", default="support-1", help="the LangGraph thread")
    parser.add_argument("--url", default=os.environ.get("SYNCSTORE_URL"), help="a sync server (else: offline)")
    parser.add_argument("--token", default=os.environ.get("SYNCSTORE_TOKEN"))
    parser.add_argument("--leave-for-review", action="store_true", help="stop at the review (approve elsewhere)")
    parser.add_argument("--resume", action="store_true", help="approve the review of --thread (e.g. after a sync)")
    args = parser.parse_args()

    async with syncstore.aio.open(args.db) as store:
        if args.url and args.resume:
            await store.sync(args.url, token=args.token)  # bring the thread from where it started
        graph = build(SyncstoreSaver(store), SyncstoreStore(store, index={"fields": ["text"]}))
        thread = args.thread if args.resume else f"{args.thread}-{uuid.uuid4().hex[:6]}"
        config = {"configurable": {"thread_id": thread}}
        if not args.resume:
            result = await graph.ainvoke({"user": "alice", "question": "how do I deploy?", "log": []}, config)
            (waiting,) = result["__interrupt__"]
            print(f"thread {thread}: waiting for approval of {waiting.value['draft']!r}")
        if not args.leave_for_review:
            result = await graph.ainvoke(Command(resume={"approved": True}), config)
            print("approved; log:", ", ".join(result["log"]))
        history = [state async for state in graph.aget_state_history(config)]
        print(f"{len(history)} checkpoints in this thread's history (newest first):")
        for state in history:
            print(f"  {state.config['configurable']['checkpoint_id']}  step {state.metadata.get('step')}  next {state.next}")
        status = await store.sync_status()
        print(f"working offline: {status.pending_changes} changes waiting in the change log")
        if args.url:
            done = await store.sync(args.url, token=args.token)
            print(f"synced with {args.url}: pushed {done.pushed}, received {done.received}")


if __name__ == "__main__":
    asyncio.run(main())
