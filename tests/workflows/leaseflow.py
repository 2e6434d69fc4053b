"""A 30-step workflow two processes race to run (the lease must let only one).

    python leaseflow.py DB GO_FILE: prints "ready", waits for GO_FILE, runs recover(),
    prints how many executions it ran.
"""

from __future__ import annotations

import os
import sys
import time

from syncstore.workflows import Registry, Workflows

STEPS = 30
REGISTRY = Registry()


@REGISTRY.step
def mark(ctx):
    fd = os.open(ctx.input["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{ctx.params['step']} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    time.sleep(0.005)
    return ctx.params["step"]


FLOW = REGISTRY.workflow("lease_race", version=1, steps=[mark.call(f"m{i}", params={"step": i}) for i in range(1, STEPS + 1)])


if __name__ == "__main__":
    import syncstore

    store = syncstore.open(sys.argv[1])
    flows = Workflows(store, registry=REGISTRY)
    print("ready", flush=True)
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.001)
    ran = flows.recover()
    print(len(ran), flush=True)
