"""A durable workflow: kill it mid-way, run it again, and it carries on where it was.

    .venv/bin/python examples/durable_workflow.py            # press Ctrl-C (or kill -9) mid-way
    .venv/bin/python examples/durable_workflow.py            # resumes: finished steps do not run again

Each step's result is recorded in the same transaction that marks it done,
so after a crash ``recover()`` replays the finished steps from the record and
runs only the rest. State lives in ``durable.db`` (delete it to start over).
"""

import time

import syncstore
from syncstore.workflows import step, workflow


@step(max_attempts=3)
def square(ctx):
    n = ctx.params["n"]
    print(f"  working on step {n}...", flush=True)
    time.sleep(0.5)  # stands in for a model call or an HTTP request
    return n * n


squares = workflow("squares", version=1, steps=[square.call(f"square_{n}", params={"n": n}) for n in range(1, 9)])

with syncstore.open("durable.db") as store:
    runs = store.workflows.recover()  # finish whatever a crash interrupted
    if runs:
        print("resumed an interrupted run")
    else:
        runs = [store.workflows.execute(squares)]
    print(runs[0].status, sum(runs[0].output.values()))
