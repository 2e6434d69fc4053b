"""The 50-step workflow that the crash tests kill at random points.

Every step appends "<step> <pid>" to a file (an effect outside the store: at
least once) and returns a value computed from the input. Odd steps are
transactional and also insert a row into a plain table of the replica file,
in the transaction that records the step (an effect inside the store: exactly
once). Loaded by path in child processes and by import in the test.
"""

from __future__ import annotations

import os
import sys
import time

from syncstore.workflows import Registry, Workflows

STEPS = 50
REGISTRY = Registry()
EFFECTS_DDL = "create table if not exists effects (step integer not null, pid integer not null)"


def _append(path: str, step: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{step} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


@REGISTRY.step
def plain(ctx):
    step = ctx.params["step"]
    _append(ctx.input["effects"], step)
    time.sleep(ctx.input.get("pause", 0.002))  # widen the window a kill can land in
    return step * step + ctx.input["offset"]


@REGISTRY.step(transactional=True)
def stored(ctx):
    step = ctx.params["step"]
    _append(ctx.input["effects"], step)
    ctx.store.connection.execute("insert into effects (step, pid) values (?, ?)", (step, os.getpid()))
    time.sleep(ctx.input.get("pause", 0.002))
    return step * step + ctx.input["offset"]


FLOW = REGISTRY.workflow(
    "crash_fifty",
    version=1,
    steps=[(stored if i % 2 else plain).call(id=f"step_{i:02d}", params={"step": i}) for i in range(1, STEPS + 1)],
)


def expected_output(offset: int) -> dict:
    return {f"step_{i:02d}": i * i + offset for i in range(1, STEPS + 1)}


def open_flows(path: str, **options):
    import syncstore

    store = syncstore.open(path)
    store.connection.execute(EFFECTS_DDL)
    return store, Workflows(store, registry=REGISTRY, **options)


if __name__ == "__main__":
    # python crashflow.py DB: prints "ready" once set up, then recovers every
    # execution in DB (the test started one), then prints "done".
    store, flows = open_flows(sys.argv[1])
    print("ready", flush=True)
    flows.recover()
    print("done", flush=True)
