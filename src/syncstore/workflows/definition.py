"""Workflow definitions: the JSON form, the node types that build it, validation.

A definition is a tree of nodes, stored as JSON in ``workflows.definition``::

    {"steps": [
        {"kind": "step", "id": "fetch", "function": "fetch_page", "max_attempts": 3},
        {"kind": "condition", "id": "big", "when": "len(state.fetch) > 10",
         "then": [{"kind": "step", "id": "summarise"}],
         "else": [{"kind": "step", "id": "skip"}]},
        {"kind": "parallel", "id": "fan_out", "branches": [[...], [...]]},
        {"kind": "wait_for_signal", "id": "approval"}
     ],
     "output": "summarise"}

Kinds: ``step`` calls a registered function by name (``function`` defaults to
the id); ``condition`` picks a branch by a safe expression (``when``) or a
registered predicate (``predicate``); ``parallel`` runs its branches
concurrently; ``wait_for_signal`` stops until someone approves or rejects.

Every node has an id, unique in the definition. Nodes are numbered 1, 2, ...
in reading order (a node, then its branches), so a number names the same node
in every execution of one version; number 0 is the execution itself. A step's
output is stored in the workflow state under its ``into`` key (default: its id).

The canonical form (defaults left out, keys sorted) is what versions compare:
registering a different canonical form under an existing version is refused.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Iterator, Literal, Union

import msgspec

from syncstore.errors import WorkflowDefinitionError
from syncstore.workflows import expressions

_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,99}$")
MAX_NODES = 10_000


class _Node(msgspec.Struct, frozen=True, tag_field="kind", omit_defaults=True, forbid_unknown_fields=True):
    pass


class Step(_Node, tag="step"):
    """Call a registered step function. Unset policy fields fall back to the
    function's own (from ``@step(...)``), then to one attempt and no timeout."""

    id: str
    function: str | None = None
    params: dict[str, Any] = {}
    into: str | None = None
    max_attempts: int | None = None
    backoff_seconds: float | None = None
    backoff_multiplier: float | None = None
    max_backoff_seconds: float | None = None
    timeout_seconds: float | None = None
    transactional: bool | None = None


class Condition(_Node, tag="condition"):
    """Run ``then`` when the condition holds, else ``else`` (``otherwise`` in Python)."""

    id: str
    when: str | None = None
    predicate: str | None = None
    then: tuple[Node, ...] = ()
    otherwise: tuple[Node, ...] = msgspec.field(default=(), name="else")


class Parallel(_Node, tag="parallel"):
    """Run each branch (a list of nodes) at the same time; their state merges in branch order."""

    id: str
    branches: tuple[tuple[Node, ...], ...] = ()


class WaitForSignal(_Node, tag="wait_for_signal"):
    """Stop until a signal named ``signal`` (default: the id) arrives, durably.
    ``on_reject``: ``fail`` ends the execution, ``continue`` carries on with the
    decision in the state. ``timeout_seconds`` fails the wait when no signal came."""

    id: str
    signal: str | None = None
    into: str | None = None
    timeout_seconds: float | None = None
    on_reject: Literal["fail", "continue"] = "fail"


Node = Union[Step, Condition, Parallel, WaitForSignal]


class Definition(msgspec.Struct, frozen=True, omit_defaults=True, forbid_unknown_fields=True):
    steps: tuple[Node, ...]
    output: str | None = None  # a state key to return; the whole state when unset


def output_key(node: Step | WaitForSignal) -> str:
    return node.into or node.id


def signal_name(node: WaitForSignal) -> str:
    return node.signal or node.id


def children(node: Node) -> Iterator[tuple[Node, ...]]:
    """The node lists directly under ``node``, in reading order."""
    if isinstance(node, Condition):
        yield node.then
        yield node.otherwise
    elif isinstance(node, Parallel):
        yield from node.branches


def walk(nodes: tuple[Node, ...]) -> Iterator[tuple[Node, int]]:
    """Every node in reading order with its depth."""
    stack: list[tuple[Node, int]] = [(n, 0) for n in reversed(nodes)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        for branch in reversed(list(children(node))):
            stack.extend((n, depth + 1) for n in reversed(branch))


class Plan:
    """A validated definition with its node numbers and compiled conditions.

    Built once per stored definition and cached; everything here is read-only.
    """

    def __init__(self, definition: Definition):
        self.definition = definition
        self.nodes: list[Node] = []  # nodes[number - 1]
        self.depths: list[int] = []
        self.numbers: dict[str, int] = {}
        self.in_parallel: set[int] = set()  # numbers of nodes inside a parallel branch
        self.conditions: dict[str, expressions.Expression] = {}
        for node, depth in walk(definition.steps):
            self.nodes.append(node)
            self.depths.append(depth)
            self.numbers[node.id] = len(self.nodes)
        self._mark_parallel(definition.steps, inside=False)
        self.canonical = canonical_json(definition)
        self.sha256 = hashlib.sha256(self.canonical.encode()).hexdigest()
        self.functions = sorted({n.function or n.id for n in self.nodes if isinstance(n, Step)})
        self.predicates = sorted({n.predicate for n in self.nodes if isinstance(n, Condition) and n.predicate})

    def _mark_parallel(self, nodes: tuple[Node, ...], *, inside: bool) -> None:
        for node in nodes:
            if inside:
                self.in_parallel.add(self.numbers[node.id])
            for branch in children(node):
                self._mark_parallel(branch, inside=inside or isinstance(node, Parallel))

    @property
    def total(self) -> int:
        return len(self.nodes)

    def number(self, node: Node) -> int:
        return self.numbers[node.id]

    def node(self, number: int) -> Node:
        if not 1 <= number <= len(self.nodes):
            raise WorkflowDefinitionError(f"no step number {number} (the definition has {len(self.nodes)})")
        return self.nodes[number - 1]

    def condition(self, node: Condition) -> expressions.Expression:
        assert node.when is not None
        return self.conditions[node.when]


def canonical_json(definition: Definition) -> str:
    return msgspec.json.encode(msgspec.to_builtins(definition), order="sorted").decode()


def _normalise_kinds(raw: Any) -> Any:
    """Accept ``wait-for-signal`` as a spelling of ``wait_for_signal``."""
    if isinstance(raw, dict):
        out = {k: _normalise_kinds(v) for k, v in raw.items()}
        if out.get("kind") == "wait-for-signal":
            out["kind"] = "wait_for_signal"
        return out
    if isinstance(raw, (list, tuple)):
        return [_normalise_kinds(v) for v in raw]
    return raw


def parse(raw: Any) -> Definition:
    """A definition from its JSON text or decoded JSON; raises WorkflowDefinitionError."""
    try:
        if isinstance(raw, Definition):
            # Built in Python: types were not checked at construction, so check them now.
            raw = msgspec.to_builtins(raw)
        if isinstance(raw, (str, bytes)):
            raw = msgspec.json.decode(raw)
        if isinstance(raw, (list, tuple)):
            raw = {"steps": raw}
        return msgspec.convert(_normalise_kinds(raw), Definition)
    except (msgspec.ValidationError, msgspec.DecodeError, TypeError) as exc:
        raise WorkflowDefinitionError(f"invalid workflow definition: {exc}") from None


def plan(raw: Any) -> Plan:
    """Parse and check a definition; the result runs as it is."""
    definition = parse(raw)
    built = Plan(definition)
    _check(built)
    for node in built.nodes:
        if isinstance(node, Condition) and node.when is not None:
            built.conditions[node.when] = expressions.compile(node.when)
    return built


def _check(built: Plan) -> None:
    def bad(problem: str, node: Node | None = None) -> WorkflowDefinitionError:
        where = f"step {node.id!r}: " if node is not None else ""
        return WorkflowDefinitionError(f"{where}{problem}")

    if not built.definition.steps:
        raise bad("a definition needs at least one step")
    if len(built.nodes) > MAX_NODES:
        raise bad(f"more than {MAX_NODES} steps")
    seen: set[str] = set()
    for node in built.nodes:
        if not _ID.match(node.id):
            raise bad("an id is letters, digits, '_', '.', '-' (at most 100), starting with a letter or '_'", node)
        if node.id in seen:
            raise bad("the id is used twice", node)
        seen.add(node.id)
        if isinstance(node, Step):
            _check_step(node, bad)
        elif isinstance(node, Condition):
            if (node.when is None) == (node.predicate is None):
                raise bad("a condition needs exactly one of 'when' (an expression) or 'predicate'", node)
            if node.when is not None:
                expressions.compile(node.when)  # raises with the position of the problem
        elif isinstance(node, Parallel):
            if not node.branches or any(not branch for branch in node.branches):
                raise bad("a parallel step needs at least one branch, and no branch may be empty", node)
        elif isinstance(node, WaitForSignal):
            if node.timeout_seconds is not None and not node.timeout_seconds > 0:
                raise bad("timeout_seconds must be positive", node)
            if node.into is not None and not node.into:
                raise bad("'into' must not be empty", node)


def _check_step(node: Step, bad: Any) -> None:
    if node.function is not None and not node.function:
        raise bad("'function' must not be empty", node)
    if node.into is not None and not node.into:
        raise bad("'into' must not be empty", node)
    if node.max_attempts is not None and not 1 <= node.max_attempts <= 1000:
        raise bad("max_attempts must be between 1 and 1000", node)
    for name in ("backoff_seconds", "max_backoff_seconds"):
        value = getattr(node, name)
        if value is not None and not 0 <= value <= 86_400:
            raise bad(f"{name} must be between 0 and 86400", node)
    if node.backoff_multiplier is not None and not 1 <= node.backoff_multiplier <= 100:
        raise bad("backoff_multiplier must be between 1 and 100", node)
    if node.timeout_seconds is not None and not node.timeout_seconds > 0:
        raise bad("timeout_seconds must be positive", node)
    if node.transactional and node.timeout_seconds is not None:
        raise bad("a transactional step cannot have a timeout (it holds the write lock)", node)


class WorkflowSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A named, versioned definition as a program declares it (see ``workflow()``)."""

    name: str
    version: int = 1
    definition: Definition
    description: str = ""
    tags: tuple[str, ...] = ()
    config: dict[str, Any] = {}
    schedule: str | None = None  # stored for schedulers to read; the engine does not act on it
