"""A small LangGraph graph with a human approval step, for the cross-machine test.

plan -> draft -> approve (interrupts for a human decision) -> publish.

Run as a script it is "machine A": it opens the replica at ``argv[1]``, runs
thread ``argv[2]`` until the interrupt, prints the checkpoint ids it wrote as
one JSON line, and waits to be killed.
"""

from __future__ import annotations

import json
import operator
import sys
import time
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt


class State(TypedDict, total=False):
    topic: str
    draft: str
    approved: bool
    published: str
    log: Annotated[list[str], operator.add]


def plan(state: State) -> dict[str, Any]:
    return {"log": [f"plan {state['topic']}"]}


def draft(state: State) -> dict[str, Any]:
    return {"draft": f"a post about {state['topic']}", "log": ["draft"]}


def approve(state: State) -> dict[str, Any]:
    decision = interrupt({"draft": state["draft"]})  # a human answers, maybe on another machine
    return {"approved": bool(decision["approved"]), "log": [f"approved={decision['approved']}"]}


def publish(state: State) -> dict[str, Any]:
    return {"published": state["draft"] if state["approved"] else "", "log": ["publish"]}


def build(checkpointer: Any) -> Any:
    builder = StateGraph(State)
    for name, node in (("plan", plan), ("draft", draft), ("approve", approve), ("publish", publish)):
        builder.add_node(name, node)
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "draft")
    builder.add_edge("draft", "approve")
    builder.add_edge("approve", "publish")
    builder.add_edge("publish", END)
    return builder.compile(checkpointer=checkpointer)


def main(path: str, thread_id: str) -> None:
    import syncstore
    from syncstore.integrations.langgraph import SyncstoreSaver

    store = syncstore.open(path)
    graph = build(SyncstoreSaver(store))
    config = {"configurable": {"thread_id": thread_id}}
    result = graph.invoke({"topic": "offline sync"}, config)
    assert "__interrupt__" in result, result
    history = [s.config["configurable"]["checkpoint_id"] for s in graph.get_state_history(config)]
    print(json.dumps({"interrupted": True, "checkpoints": history}), flush=True)
    time.sleep(3600)  # the test kills this process here, with SIGKILL


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
