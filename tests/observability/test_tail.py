"""Tailing events, local and arriving by sync; executions and events crossing replicas."""

from __future__ import annotations

import threading

import syncstore
from syncstore.core.merge import Cell
from syncstore.replica.store import RemoteChange


def ship(source: syncstore.Store, target: syncstore.Store) -> int:
    """Carry ``source``'s logged changes into ``target`` the way the sync
    client applies what the server relays: cells stamped with the writer's clock."""
    if "events" in source.__dict__:
        source.events.flush()
    changes = source.changes()
    target.apply_remote(
        RemoteChange(c.table, c.id, {name: Cell(value, c.hlc, source.site_id) for name, value in c.values.items() if name != "id"})
        for c in changes
    )
    return len(changes)


def test_tail_gives_the_last_events_in_arrival_order_with_filters(store):
    store.events.emit("a", component="llm", severity="debug")
    store.events.emit("b", component="tool", severity="warn", execution_id="e1")
    store.events.emit("c", component="llm", severity="error")
    store.events.emit("d", component="llm", severity="info", execution_id="e1")
    names = lambda found: [e.event_type for _, e in found]  # noqa: E731
    assert names(store.events.tail(last=3)) == ["b", "c", "d"]
    assert names(store.events.tail(last=10, severity="warn")) == ["b", "c"]  # warn and above
    assert names(store.events.tail(last=10, component="llm")) == ["a", "c", "d"]
    assert names(store.events.tail(last=10, execution_id="e1")) == ["b", "d"]
    rowids = [rowid for rowid, _ in store.events.tail(last=10)]
    assert names(store.events.tail(after=rowids[1])) == ["c", "d"]
    assert names(store.events.tail(after=rowids[1], limit=1)) == ["c"]


def test_follow_yields_events_as_another_process_writes_them(store, replica_path):
    store.events.emit("before")
    writer = syncstore.open(replica_path)  # another connection, as another process would have
    stop = threading.Event()
    seen: list[str] = []
    ready = threading.Event()

    def watch() -> None:
        for event in store.events.follow(last=1, poll_interval=0.01, stop=stop):
            seen.append(event.event_type)
            ready.set()
            if len(seen) == 4:
                stop.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert ready.wait(20)  # the one older event came first
    for name in ("one", "two", "three"):
        writer.events.emit(name, severity="error")  # errors are written at once
    watcher.join(20)
    assert not watcher.is_alive()
    assert seen == ["before", "one", "two", "three"]
    writer.close()


def test_events_arriving_by_sync_show_up_in_the_tail(tmp_path):
    here, there = syncstore.open(str(tmp_path / "here.db")), syncstore.open(str(tmp_path / "there.db"))
    here.events.emit("local")
    there.events.emit("remote", component="other-agent")
    start = here.events.tail(last=1)[-1][0]
    heard: list[syncstore.Change] = []
    here.subscribe("observability_events", heard.extend)
    assert ship(there, here) == 1
    (arrived,) = here.events.tail(after=start)
    assert arrived[1].event_type == "remote" and arrived[1].component == "other-agent"
    assert [(c.op, c.origin) for c in heard] == [("insert", "remote")]
    here.close()
    there.close()


def test_an_offline_run_reaches_another_replica_whole(tmp_path):
    offline, elsewhere = syncstore.open(str(tmp_path / "offline.db")), syncstore.open(str(tmp_path / "elsewhere.db"))
    with offline.executions.track("planner", input={"goal": "ship it"}) as run:
        offline.events.emit("step", component="planner", data={"n": 1})
        run.usage(input_tokens=5, output_tokens=6, cost=0.01)
        run.output = {"done": True}
    # Nothing left the machine: the run is in the change log, waiting to be pushed
    # (events join it when the writer flushes: within one interval, here at once).
    offline.events.flush()
    pending = {(c.table, c.id) for c in offline.changes()}
    assert ("agent_executions", run.id) in pending
    assert sum(1 for table, _ in pending if table == "observability_events") == 1
    ship(offline, elsewhere)
    copy = elsewhere.executions.get(run.id)
    assert copy == offline.executions.get(run.id)
    assert [e.id for e in elsewhere.executions.events(run.id)] == [e.id for e in offline.executions.events(run.id)]
    offline.close()
    elsewhere.close()
