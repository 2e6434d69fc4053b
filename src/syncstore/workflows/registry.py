"""Where a process keeps its step functions, predicates and workflow specs.

Definitions name step functions; only a process that has registered a name can
run a step that uses it. Registering happens at import time through the
decorators, so the CLI finds a program's steps by importing its module
(``--module my_agent.steps`` or ``--module path/to/steps.py``).

    @step(max_attempts=3, timeout_seconds=30)
    def fetch(ctx):
        return http_get(ctx.params["url"])

    pipeline = workflow("pipeline", version=1, steps=[fetch, summarise])
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any, Callable, Iterable, Sequence

from syncstore.errors import WorkflowDefinitionError
from syncstore.workflows.definition import (
    Condition,
    Definition,
    Node,
    Parallel,
    Step,
    WaitForSignal,
    WorkflowSpec,
    plan,
)

StepFn = Callable[..., Any]


class StepFunction:
    """A registered step: still callable as the plain function it wraps."""

    def __init__(
        self,
        fn: StepFn,
        *,
        name: str,
        max_attempts: int | None = None,
        backoff_seconds: float | None = None,
        backoff_multiplier: float | None = None,
        max_backoff_seconds: float | None = None,
        timeout_seconds: float | None = None,
        transactional: bool = False,
    ):
        self.fn = fn
        self.name = name
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.backoff_multiplier = backoff_multiplier
        self.max_backoff_seconds = max_backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.transactional = transactional
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def call(self, id: str | None = None, *, params: dict[str, Any] | None = None, into: str | None = None) -> Step:  # noqa: A002
        """A step node that calls this function, with its retry and timeout policy
        written into the definition (so changing the policy changes the version)."""
        return Step(
            id or self.name,
            function=self.name,
            params=params or {},
            into=into,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
            backoff_multiplier=self.backoff_multiplier,
            max_backoff_seconds=self.max_backoff_seconds,
            timeout_seconds=self.timeout_seconds,
            transactional=self.transactional or None,
        )

    def __repr__(self) -> str:
        return f"<step {self.name}>"


def _origin(fn: Callable[..., Any]) -> tuple[str, str]:
    return getattr(fn, "__module__", "") or "", getattr(fn, "__qualname__", "") or repr(fn)


class Registry:
    """Step functions and predicates by name, and workflow specs by (name, version)."""

    def __init__(self) -> None:
        self.steps: dict[str, StepFunction] = {}
        self.predicates: dict[str, Callable[..., bool]] = {}
        self.specs: dict[tuple[str, int], WorkflowSpec] = {}

    # --- registering ----------------------------------------------------------

    def step(
        self,
        fn: StepFn | None = None,
        *,
        name: str | None = None,
        max_attempts: int | None = None,
        backoff_seconds: float | None = None,
        backoff_multiplier: float | None = None,
        max_backoff_seconds: float | None = None,
        timeout_seconds: float | None = None,
        transactional: bool = False,
    ) -> Any:
        """Register a step function (``@step`` or ``@step(max_attempts=3, ...)``).

        The function gets one argument, a :class:`~syncstore.workflows.context.StepContext`,
        and returns a JSON value: the step's output. ``transactional=True`` runs it
        inside the transaction that records its output, so its own writes to the
        store happen exactly once (it holds the write lock while it runs).
        """

        def register(target: StepFn) -> StepFunction:
            wrapped = StepFunction(
                target,
                name=name or target.__name__,
                max_attempts=max_attempts,
                backoff_seconds=backoff_seconds,
                backoff_multiplier=backoff_multiplier,
                max_backoff_seconds=max_backoff_seconds,
                timeout_seconds=timeout_seconds,
                transactional=transactional,
            )
            self._add(self.steps, wrapped.name, wrapped, target, "step function")
            return wrapped

        return register(fn) if fn is not None else register

    def predicate(self, fn: Callable[..., bool] | None = None, *, name: str | None = None) -> Any:
        """Register a condition predicate, called as ``fn(state, input)``; it must be pure."""

        def register(target: Callable[..., bool]) -> Callable[..., bool]:
            self._add(self.predicates, name or target.__name__, target, target, "predicate")
            return target

        return register(fn) if fn is not None else register

    def _add(self, table: dict[str, Any], key: str, value: Any, fn: Callable[..., Any], what: str) -> None:
        existing = table.get(key)
        if existing is not None:
            old = getattr(existing, "__wrapped__", existing)
            # The same function imported again (a reloaded module) replaces itself;
            # a different function under a taken name is a mistake worth stopping.
            if _origin(old) != _origin(fn):
                raise WorkflowDefinitionError(
                    f"a {what} named {key!r} is already registered ({'.'.join(_origin(old))}); "
                    f"pass name= to register {'.'.join(_origin(fn))} under another name"
                )
        table[key] = value

    def workflow(
        self,
        name: str,
        *,
        steps: Sequence[Node | StepFunction | str],
        version: int = 1,
        output: str | None = None,
        description: str = "",
        tags: Iterable[str] = (),
        config: dict[str, Any] | None = None,
        schedule: str | None = None,
    ) -> WorkflowSpec:
        """Declare a workflow. ``steps`` mixes nodes (``Step``, ``Condition``,
        ``Parallel``, ``WaitForSignal``), step functions, and function names."""
        if not isinstance(name, str) or not name.strip():
            raise WorkflowDefinitionError("a workflow needs a name")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise WorkflowDefinitionError("a workflow version is a whole number >= 1")
        definition = Definition(steps=tuple(self._node(s) for s in steps), output=output)
        plan(definition)  # refuse a bad definition where it is written, not where it runs
        spec = WorkflowSpec(
            name=name,
            version=version,
            definition=definition,
            description=description,
            tags=tuple(tags),
            config=dict(config or {}),
            schedule=schedule,
        )
        self.specs[(name, version)] = spec
        return spec

    def _node(self, item: Node | StepFunction | str) -> Node:
        if isinstance(item, StepFunction):
            return item.call()
        if isinstance(item, str):
            found = self.steps.get(item)
            return found.call() if found is not None else Step(item, function=item)
        if isinstance(item, Condition):
            return Condition(
                item.id,
                when=item.when,
                predicate=item.predicate,
                then=tuple(self._node(n) for n in item.then),
                otherwise=tuple(self._node(n) for n in item.otherwise),
            )
        if isinstance(item, Parallel):
            return Parallel(item.id, branches=tuple(tuple(self._node(n) for n in b) for b in item.branches))
        if isinstance(item, (Step, WaitForSignal)):
            return item
        raise WorkflowDefinitionError(f"not a workflow step: {item!r}")

    # --- looking up -----------------------------------------------------------

    def function(self, name: str) -> StepFunction:
        try:
            return self.steps[name]
        except KeyError:
            raise WorkflowDefinitionError(f"no step function named {name!r} is registered in this process") from None

    def missing(self, functions: Iterable[str], predicates: Iterable[str] = ()) -> list[str]:
        """Names a definition needs that this process has not registered."""
        gone = [f"step function {n!r}" for n in functions if n not in self.steps]
        gone += [f"predicate {n!r}" for n in predicates if n not in self.predicates]
        return gone

    def latest(self, name: str) -> WorkflowSpec | None:
        versions = [v for (n, v) in self.specs if n == name]
        return self.specs[(name, max(versions))] if versions else None

    def versions(self, name: str) -> list[WorkflowSpec]:
        return [self.specs[k] for k in sorted(k for k in self.specs if k[0] == name)]


default = Registry()
step = default.step
predicate = default.predicate
workflow = default.workflow


def load_module(target: str) -> ModuleType:
    """Import a module by dotted name or by ``.py`` path, so its decorators register."""
    if target.endswith(".py") or os.sep in target:
        path = os.path.abspath(target)
        if not os.path.isfile(path):
            raise WorkflowDefinitionError(f"no such module file: {target}")
        name = "_syncstore_steps_" + os.path.splitext(os.path.basename(path))[0]
        if name in sys.modules and getattr(sys.modules[name], "__file__", None) == path:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
    try:
        return importlib.import_module(target)
    except ImportError as exc:
        raise WorkflowDefinitionError(f"cannot import {target!r}: {exc}") from None
