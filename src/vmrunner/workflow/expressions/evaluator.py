"""Evaluate an expression tree against contexts, with GitHub's semantics.

* Contexts and object keys are looked up case-insensitively (an exact match wins).
* ``a.b`` and ``a['b']`` on anything but an object give ``null``; ``a[n]`` floors ``n``
  and gives ``null`` out of range; an object index is coerced to a string.
* ``a.*`` / ``a[*]`` make a *filtered array* of the values of an object or array (empty
  for anything else); indexing a filtered array applies the index to each element that
  is an object or array and keeps what is found.
* ``&&`` and ``||`` short-circuit and return an operand, not a boolean.
* Memory held in intermediate results is counted as GitHub counts it and capped at
  :data:`~.limits.MAX_MEMORY` bytes.

Pure: no I/O, no clock. Every failure is an :class:`ExpressionError`, except what an
injected ``hash_files`` callable raises.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .coerce import compare, fold, is_primitive, loose_equals, to_bool, to_number, to_string
from .errors import ExpressionError
from .formatting import Thunk
from .functions import CallEnv, Functions, lookup
from .limits import MAX_DEPTH, MAX_MEMORY, memory_error, value_bytes
from .nodes import And, Call, Compare, Index, Literal, NamedValue, Node, Not, Or, Wildcard

_MISSING = object()
_MAX_INDEX = 2**31 - 1


class FilteredArray(list[Any]):
    """The array a ``*`` filter makes; further indexing maps over its elements."""


def lookup_key(obj: Mapping[Any, Any], key: str) -> Any:
    """``obj[key]`` matching case-insensitively (exact match first), or ``_MISSING``."""
    if key in obj:
        return obj[key]
    folded = fold(key)
    for candidate, value in obj.items():
        if isinstance(candidate, str) and fold(candidate) == folded:
            return value
    return _MISSING


def _string_key(key: Any) -> str | None:
    return to_string(key) if is_primitive(key) else None


def _integer_key(key: Any) -> int | None:
    number = to_number(key)
    if math.isnan(number) or number < 0 or number > _MAX_INDEX:
        return None
    return math.floor(number)


class _Memory:
    """Bytes held per tree level; finishing a node releases the levels below it."""

    def __init__(self) -> None:
        self.levels: list[int] = []
        self.total = 0

    def record(self, depth: int, nbytes: int) -> None:
        while len(self.levels) > depth + 1:
            self.total -= self.levels.pop()
        while len(self.levels) <= depth:
            self.levels.append(0)
        self.levels[depth] += nbytes
        self.total += nbytes
        if self.total > MAX_MEMORY:
            raise memory_error()


class _Evaluation:
    def __init__(self, contexts: Mapping[str, Any], functions: Functions | None) -> None:
        self.contexts = {name.lower(): value for name, value in reversed(list(contexts.items()))}
        self.env = CallEnv(functions)
        self.memory = _Memory()

    def eval(self, node: Node, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ExpressionError(f"Exceeded max expression depth {MAX_DEPTH}")
        value = self.dispatch(node, depth)
        self.memory.record(depth, value_bytes(value))
        return value

    def dispatch(self, node: Node, depth: int) -> Any:
        match node:
            case Literal(value=value):
                return value
            case NamedValue(name=name):
                value = self.contexts.get(name.lower(), _MISSING)
                if value is _MISSING:
                    raise ExpressionError(f"Unrecognized named-value: '{name}'")
                return value
            case Not(operand=operand):
                return not to_bool(self.eval(operand, depth + 1))
            case Compare(op=op, left=left, right=right):
                return self.compare(op, self.eval(left, depth + 1), self.eval(right, depth + 1))
            case And(operands=operands) | Or(operands=operands):
                return self.logical(isinstance(node, Or), operands, depth)
            case Index():
                return self.index(node, depth)
            case Call():
                return self.call(node, depth)
        raise ExpressionError(f"cannot evaluate a {type(node).__name__} node here")

    @staticmethod
    def compare(op: str, left: Any, right: Any) -> bool:
        if op in ("==", "!="):
            return loose_equals(left, right) == (op == "==")
        return compare(op, left, right)

    def logical(self, stop_when: bool, operands: tuple[Node, ...], depth: int) -> Any:
        value: Any = None
        for operand in operands:
            value = self.eval(operand, depth + 1)
            if to_bool(value) == stop_when:
                break
        return value

    def thunk(self, node: Node, depth: int) -> Thunk:
        cell: list[Any] = []

        def force() -> Any:
            if not cell:
                cell.append(self.eval(node, depth))
            return cell[0]

        return force

    def call(self, node: Call, depth: int) -> Any:
        spec = lookup(node.name)
        if spec is None:
            raise ExpressionError(f"Unrecognized function: '{node.name}'")
        count = len(node.args)
        if not spec.min_args <= count <= spec.max_args or (spec.odd_args and count % 2 == 0):
            raise ExpressionError(f"Wrong number of parameters supplied: '{node.name}'")
        return spec.impl(self.env, [self.thunk(arg, depth + 1) for arg in node.args])

    def index(self, node: Index, depth: int) -> Any:
        target = self.eval(node.target, depth + 1)
        wildcard = isinstance(node.key, Wildcard)
        key: Thunk = (lambda: None) if wildcard else self.thunk(node.key, depth + 1)
        if isinstance(target, FilteredArray):
            return _filter(target, wildcard, key())
        if isinstance(target, Mapping):
            if wildcard:
                return FilteredArray(target.values())
            return _from_object(target, key())
        if isinstance(target, list | tuple):
            if wildcard:
                return FilteredArray(target)
            position = _integer_key(key())
            return target[position] if position is not None and position < len(target) else None
        return FilteredArray() if wildcard else None


def _from_object(obj: Mapping[Any, Any], key: Any) -> Any:
    name = _string_key(key)
    found = _MISSING if name is None else lookup_key(obj, name)
    return None if found is _MISSING else found


def _filter(items: FilteredArray, wildcard: bool, key: Any) -> FilteredArray:
    result = FilteredArray()
    for item in items:
        if isinstance(item, Mapping):
            if wildcard:
                result.extend(item.values())
            elif (name := _string_key(key)) is not None:
                found = lookup_key(item, name)
                if found is not _MISSING:
                    result.append(found)
        elif isinstance(item, list | tuple):
            if wildcard:
                result.extend(item)
            elif (position := _integer_key(key)) is not None and position < len(item):
                result.append(item[position])
    return result


def evaluate_node(
    node: Node, contexts: Mapping[str, Any], functions: Functions | None = None
) -> Any:
    """Evaluate a parsed tree. A filtered array comes back as a plain ``list``."""
    value = _Evaluation(contexts, functions).eval(node, 1)
    return list(value) if isinstance(value, FilteredArray) else value
