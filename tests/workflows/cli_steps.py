"""Steps for the CLI tests, registered in the default registry (as a user's module
would be) and loaded only through ``--module path/to/cli_steps.py``."""

from syncstore.workflows import Condition, WaitForSignal, step, workflow


@step
def cli_double(ctx):
    return (ctx.input or {}).get("n", 1) * 2


@step
def cli_describe(ctx):
    return f"doubled to {ctx.state['cli_double']}"


review = workflow(
    "cli_review",
    version=1,
    steps=[
        cli_double,
        WaitForSignal("approval", on_reject="continue"),
        Condition("approved", when="state.approval.approved", then=[cli_describe], otherwise=[]),
    ],
)
