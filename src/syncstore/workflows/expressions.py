"""A small, safe expression language for workflow conditions.

Conditions are written in a Python-like syntax and parsed with :mod:`ast`;
the parsed tree is checked against a whitelist and turned into plain Python
closures. Nothing is ever passed to ``eval`` or ``compile``, so a definition
that arrives from another replica can do no more than compute a value.

What an expression may use:

- the names ``state`` (the workflow state), ``input`` (the execution input),
  and ``true``/``false``/``null`` beside Python's ``True``/``False``/``None``;
- ``a.b`` and ``a["b"]`` read a key of a JSON object (a missing key reads as
  ``null``), ``a[0]`` an item of a list;
- literals: numbers, strings, lists and tuples of them;
- ``and or not``, ``== != < <= > >=``, ``in``, ``not in``, ``is null``,
  ``+ - * / // %`` on numbers (``+`` also joins strings), ``x if c else y``;
- the functions ``len abs min max round int float str bool lower upper``.

No attribute of a Python object is ever read, no other function can be
called, and sizes are bounded (expression length, node count, string and
number sizes) so an expression cannot exhaust memory or time.
"""

from __future__ import annotations

import ast
import operator
from typing import Any, Callable, Mapping

from syncstore.errors import WorkflowDefinitionError

MAX_LENGTH = 2_000  # characters of expression text
MAX_NODES = 300  # syntax-tree nodes
MAX_STRING = 100_000  # characters of a string the expression builds
MAX_INT_DIGITS = 400


class ExpressionError(WorkflowDefinitionError):
    """An expression that cannot be parsed, or that fails while it is evaluated."""


Scope = Mapping[str, Any]
Evaluator = Callable[[Scope], Any]

_NAMES = {"state", "input"}
_CONSTANTS = {"true": True, "false": False, "null": None}


def _lower(value: Any) -> str:
    return _want_str(value, "lower").lower()


def _upper(value: Any) -> str:
    return _want_str(value, "upper").upper()


def _want_str(value: Any, fn: str) -> str:
    if not isinstance(value, str):
        raise ExpressionError(f"{fn}() needs a string, got {_type(value)}")
    return value


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "abs": abs,
    "min": min,
    "max": max,
    "round": round,
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "lower": _lower,
    "upper": _upper,
}

_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: lambda a, b: a is b,
    ast.IsNot: lambda a, b: a is not b,
}


def _type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "list", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _checked(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_STRING:
        raise ExpressionError(f"a string longer than {MAX_STRING} characters")
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**MAX_INT_DIGITS:
        raise ExpressionError(f"a number with more than {MAX_INT_DIGITS} digits")
    return value


def _arith(op: ast.operator) -> Callable[[Any, Any], Any]:
    fns: dict[type, Callable[[Any, Any], Any]] = {
        ast.Add: operator.add,
        ast.Sub: operator.sub,
        ast.Mult: operator.mul,
        ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv,
        ast.Mod: operator.mod,
    }
    fn = fns[type(op)]
    symbol = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%"}[type(op)]

    def apply(a: Any, b: Any) -> Any:
        both_numbers = _is_number(a) and _is_number(b)
        joins_strings = isinstance(op, ast.Add) and isinstance(a, str) and isinstance(b, str)
        if not (both_numbers or joins_strings):
            raise ExpressionError(f"cannot apply {symbol} to {_type(a)} and {_type(b)}")
        try:
            return _checked(fn(a, b))
        except ZeroDivisionError:
            raise ExpressionError("division by zero") from None

    return apply


def _read(container: Any, key: Any, text: str) -> Any:
    if isinstance(container, Mapping):
        if not isinstance(key, str):
            raise ExpressionError(f"{text}: object keys are strings, got {_type(key)}")
        return container.get(key)
    if isinstance(container, (list, tuple, str)):
        if not isinstance(key, int) or isinstance(key, bool):
            raise ExpressionError(f"{text}: a list index is a whole number, got {_type(key)}")
        try:
            return container[key]
        except IndexError:
            raise ExpressionError(f"{text}: index {key} is out of range (length {len(container)})") from None
    if container is None:
        return None  # reading through a missing key stays missing: state.a.b is null
    raise ExpressionError(f"{text}: cannot read {key!r} of a {_type(container)}")


class Expression:
    """A compiled expression: call it with ``state`` and ``input`` to get its value."""

    def __init__(self, text: str, evaluate: Evaluator):
        self.text = text
        self._evaluate = evaluate

    def __call__(self, *, state: Mapping[str, Any], input: Any = None) -> Any:  # noqa: A002 - the language's name
        try:
            return self._evaluate({"state": state, "input": input})
        except ExpressionError as exc:
            raise ExpressionError(f"{self.text!r}: {exc}") from None
        except (TypeError, ValueError, OverflowError) as exc:
            # e.g. comparing a string with a number, int("x"), len(5)
            raise ExpressionError(f"{self.text!r}: {exc}") from None

    def truth(self, *, state: Mapping[str, Any], input: Any = None) -> bool:  # noqa: A002
        return bool(self(state=state, input=input))

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


def compile(text: str) -> Expression:  # noqa: A001 - the module's verb; never the builtin
    """Parse and check ``text``; raises ExpressionError naming the problem."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("an expression must be non-empty text")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"an expression is at most {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"{text!r}: syntax error at column {exc.offset}: {exc.msg}") from None
    count = sum(1 for _ in ast.walk(tree))
    if count > MAX_NODES:
        raise ExpressionError(f"{text!r}: too complex ({count} parts; at most {MAX_NODES})")
    return Expression(text, _Builder(text).build(tree.body))


class _Builder:
    """Turns a checked syntax tree into closures, refusing anything not on the whitelist."""

    def __init__(self, text: str):
        self.text = text

    def refuse(self, node: ast.AST, what: str) -> ExpressionError:
        col = getattr(node, "col_offset", None)
        where = f" at column {col + 1}" if col is not None else ""
        return ExpressionError(f"{self.text!r}: {what} is not allowed{where}")

    def build(self, node: ast.AST) -> Evaluator:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise self.refuse(node, type(node).__name__)
        return method(node)

    def _Constant(self, node: ast.Constant) -> Evaluator:
        value = node.value
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise self.refuse(node, f"a {type(value).__name__} literal")
        _checked(value)
        return lambda scope: value

    def _Name(self, node: ast.Name) -> Evaluator:
        if node.id in _CONSTANTS:
            value = _CONSTANTS[node.id]
            return lambda scope: value
        if node.id in _NAMES:
            name = node.id
            return lambda scope: scope[name]
        raise ExpressionError(f"{self.text!r}: unknown name {node.id!r} (use state, input, true, false, null)")

    def _Attribute(self, node: ast.Attribute) -> Evaluator:
        base, key, text = self.build(node.value), node.attr, ast.unparse(node)
        return lambda scope: _read(base(scope), key, text)

    def _Subscript(self, node: ast.Subscript) -> Evaluator:
        if isinstance(node.slice, ast.Slice):
            raise self.refuse(node, "a slice")
        base, index, text = self.build(node.value), self.build(node.slice), ast.unparse(node)
        return lambda scope: _read(base(scope), index(scope), text)

    def _List(self, node: ast.List) -> Evaluator:
        items = [self.build(e) for e in node.elts]
        return lambda scope: [item(scope) for item in items]

    _Tuple = _List

    def _BoolOp(self, node: ast.BoolOp) -> Evaluator:
        values = [self.build(v) for v in node.values]
        if isinstance(node.op, ast.And):

            def all_of(scope: Scope) -> Any:
                result: Any = True
                for value in values:
                    result = value(scope)
                    if not result:
                        return result
                return result

            return all_of

        def any_of(scope: Scope) -> Any:
            result: Any = False
            for value in values:
                result = value(scope)
                if result:
                    return result
            return result

        return any_of

    def _UnaryOp(self, node: ast.UnaryOp) -> Evaluator:
        operand = self.build(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda scope: not operand(scope)
        if isinstance(node.op, (ast.USub, ast.UAdd)):
            negate = isinstance(node.op, ast.USub)

            def sign(scope: Scope) -> Any:
                value = operand(scope)
                if not _is_number(value):
                    raise ExpressionError(f"cannot negate a {_type(value)}")
                return -value if negate else value

            return sign
        raise self.refuse(node, type(node.op).__name__)

    def _BinOp(self, node: ast.BinOp) -> Evaluator:
        if type(node.op) not in (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod):
            raise self.refuse(node, f"the operator {type(node.op).__name__}")
        left, right, apply = self.build(node.left), self.build(node.right), _arith(node.op)
        return lambda scope: apply(left(scope), right(scope))

    def _Compare(self, node: ast.Compare) -> Evaluator:
        first = self.build(node.left)
        steps = []
        for op, right in zip(node.ops, node.comparators):
            if isinstance(op, (ast.Is, ast.IsNot)) and not (
                isinstance(right, ast.Constant) and right.value is None
                or isinstance(right, ast.Name) and right.id == "null"
            ):
                raise self.refuse(node, "'is' with anything but null")
            steps.append((_COMPARE[type(op)], self.build(right)))

        def compare(scope: Scope) -> bool:
            left = first(scope)
            for fn, right in steps:
                value = right(scope)
                if not fn(left, value):
                    return False
                left = value
            return True

        return compare

    def _IfExp(self, node: ast.IfExp) -> Evaluator:
        test, body, orelse = self.build(node.test), self.build(node.body), self.build(node.orelse)
        return lambda scope: body(scope) if test(scope) else orelse(scope)

    def _Call(self, node: ast.Call) -> Evaluator:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise ExpressionError(
                f"{self.text!r}: unknown function {name!r} (allowed: {', '.join(sorted(_FUNCTIONS))})"
            )
        if node.keywords:
            raise self.refuse(node, "a keyword argument")
        fn = _FUNCTIONS[node.func.id]
        args = [self.build(a) for a in node.args]
        return lambda scope: _checked(fn(*[a(scope) for a in args]))
