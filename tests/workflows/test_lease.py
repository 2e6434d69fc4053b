"""One owner at a time: two processes, stale owners, dead owners, expired leases."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections import Counter

import pytest

import syncstore
from syncstore import schema
from syncstore.errors import LeaseHeldError, LeaseLostError
from syncstore.workflows import Workflows, lease

from . import crashflow, leaseflow


def stamp(seconds_from_now: float) -> str:
    return schema.format_timestamp(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds_from_now))


def test_two_processes_never_run_one_execution_together(tmp_path, python):
    db, log, go = str(tmp_path / "race.db"), str(tmp_path / "race.txt"), str(tmp_path / "go")
    with syncstore.open(db) as store:
        execution = Workflows(store, registry=leaseflow.REGISTRY).start(leaseflow.FLOW, input={"log": log})
    children = [
        subprocess.Popen([python, leaseflow.__file__, db, go], stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    for child in children:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    open(go, "w").close()  # both start recover() at the same moment
    ran = []
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        ran.append(int(out.strip()))
    with open(log) as f:
        lines = [tuple(map(int, line.split())) for line in f]
    steps = Counter(step for step, _ in lines)
    assert steps == Counter(range(1, leaseflow.STEPS + 1))  # every step exactly once
    assert len({pid for _, pid in lines}) == 1  # all by one process
    assert sorted(ran) == [0, 1]
    with syncstore.open(db) as store:
        assert Workflows(store, registry=leaseflow.REGISTRY).get(execution.id).status == "completed"


def test_a_live_owner_blocks_a_second_engine_and_recover_skips_it(tmp_path, registry):
    path = str(tmp_path / "one.db")
    first, second = syncstore.open(path), syncstore.open(path)
    flows_1 = Workflows(first, registry=registry)
    flows_2 = Workflows(second, registry=registry)
    seen = []

    @registry.step
    def probe(ctx):
        with pytest.raises(LeaseHeldError) as held:
            flows_2.run(ctx.execution_id)
        seen.append(held.value.owner)
        seen.append([r.id for r in flows_2.recover()])
        return "ok"

    done = flows_1.execute(registry.workflow("held", steps=[probe]))
    assert done.status == "completed" and done.lease_owner is None
    assert seen == [flows_1.engine.owner, []]
    first.close()
    second.close()


def test_an_owner_whose_lease_was_taken_stops_without_recording(flows, registry, store):
    ran = []

    @registry.step
    def work(ctx):
        ran.append(ctx.step_id)
        if ctx.step_id == "b":
            # Another owner takes over (as if our lease had expired while this step ran).
            store.update("workflow_executions", ctx.execution_id, {"lease_owner": "elsewhere:1:-:00", "lease_expires_at": stamp(60)})
        return ctx.step_id

    spec = registry.workflow("fenced", steps=[work.call("a"), work.call("b"), work.call("c")])
    execution = flows.start(spec)
    with pytest.raises(LeaseLostError, match="elsewhere"):
        flows.run(execution.id)
    assert ran == ["a", "b"]
    recorded = [r["step_name"] for r in store.query("select step_name from execution_snapshots where execution_id = ? and kind = 'step_end'", (execution.id,))]
    assert recorded == ["a"]  # b finished after the takeover: its result is not ours to record


def test_leases_of_other_machines_hold_until_they_expire(flows, registry, store):
    @registry.step
    def one(ctx):
        return 1

    execution = flows.start(registry.workflow("foreign", steps=[one]))
    store.update("workflow_executions", execution.id, {"status": "running", "lease_owner": "other-host:4026531836:123:456:ab", "lease_expires_at": stamp(60)})
    with pytest.raises(LeaseHeldError):
        flows.run(execution.id)
    assert flows.recover() == []
    store.update("workflow_executions", execution.id, {"lease_expires_at": stamp(-1)})
    assert flows.run(execution.id).status == "completed"


def test_a_dead_owner_on_this_machine_holds_nothing(tmp_path, python):
    db, log = str(tmp_path / "dead.db"), str(tmp_path / "dead.txt")
    store, flows = crashflow.open_flows(db)
    execution = flows.start(crashflow.FLOW, input={"effects": log, "offset": 0, "pause": 0.05})
    child = subprocess.Popen([python, crashflow.__file__, db], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    while not os.path.exists(log):  # it has begun the first step
        pass
    child.kill()
    child.wait()
    held = flows.get(execution.id)
    assert held.lease_owner is not None and held.lease_expires_at > dt.datetime.now(dt.timezone.utc)
    assert lease.owner_dead(held.lease_owner)
    assert flows.run(execution.id).status == "completed"  # no wait for the 30 s lease
    store.close()


def test_owner_ids_identify_this_process():
    me = lease.new_owner()
    assert not lease.owner_dead(me)
    host, namespace, pid, _, _ = me.rsplit(":", 4)
    assert int(pid) == os.getpid()
    assert not lease.live(me, stamp(60), me=me)  # our own lease does not block us
    assert lease.live(me, stamp(60), me="someone else")
    assert not lease.live(me, stamp(-1), me="someone else")
    assert sys.platform != "linux" or lease.owner_dead(f"{host}:{namespace}:999999999:1:ab")
    # Another PID namespace (a container sharing the host name): cannot tell, so never "dead".
    assert not lease.owner_dead(f"{host}:1:999999999:1:ab")


def test_one_engine_never_runs_an_execution_twice_from_two_threads(flows, registry):
    seen = {}

    @registry.step
    def probe(ctx):
        result = {}

        def other_thread():
            try:
                flows.run(ctx.execution_id)
            except LeaseHeldError:
                result["held"] = True
            result["recovered"] = [r.id for r in flows.recover()]

        import threading

        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join()
        seen.update(result)
        return "once"

    done = flows.execute(registry.workflow("threads", steps=[probe]))
    assert done.output == {"probe": "once"}
    assert seen == {"held": True, "recovered": []}


def test_the_heartbeat_keeps_a_long_step_leased_and_passes_on_a_pause(tmp_path, registry):
    import time

    path = str(tmp_path / "long.db")
    first, second = syncstore.open(path), syncstore.open(path)
    flows_1 = Workflows(first, registry=registry, lease_seconds=0.3)
    flows_2 = Workflows(second, registry=registry, lease_seconds=0.3)
    seen = {}

    @registry.step
    def long(ctx):
        time.sleep(1.0)  # three leases long: only the heartbeat keeps it ours
        try:
            flows_2.run(ctx.execution_id)
        except LeaseHeldError:
            seen["held"] = True
        flows_2.pause(ctx.execution_id)  # from the other connection, while we run
        deadline = time.monotonic() + 10
        while not ctx.stop_requested and time.monotonic() < deadline:
            time.sleep(0.01)
        seen["stop_requested"] = ctx.stop_requested
        return "stopped early"

    @registry.step
    def later(ctx):
        return "resumed"

    paused = flows_1.execute(registry.workflow("long", steps=[long, later]))
    assert seen == {"held": True, "stop_requested": True}
    assert paused.status == "paused" and paused.state == {"long": "stopped early"}
    flows_2.resume(paused.id)
    assert flows_2.run(paused.id).output == {"long": "stopped early", "later": "resumed"}
    first.close()
    second.close()
