"""The syntax tree of a ``${{ }}`` expression.

Nodes are immutable. Every node carries ``pos``, the 0-based offset in the parsed source of
the token that introduced it: the first character of a literal, named-value or function
name, the operator of ``!``, comparisons, ``&&`` and ``||`` (the first one for a chain),
and the ``.`` or ``[`` of an index. ``pos`` is ignored by ``==``.

Parentheses leave no node: ``(a)`` parses to the same tree as ``a``. ``a && b && c`` is a
single :class:`And` with three operands (GitHub counts it as one level of depth).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

LiteralValue = None | bool | float | str


@dataclass(frozen=True, slots=True)
class Node:
    """Base class of every expression node."""

    pos: int = field(default=0, compare=False, kw_only=True)

    def children(self) -> tuple[Node, ...]:
        """The direct sub-nodes, left to right."""
        return ()


@dataclass(frozen=True, slots=True)
class Literal(Node):
    """``null``, ``true``, ``false``, a number (always a float) or a string."""

    value: LiteralValue


@dataclass(frozen=True, slots=True)
class NamedValue(Node):
    """A reference to a named context such as ``github`` (matched case-insensitively)."""

    name: str


@dataclass(frozen=True, slots=True)
class Wildcard(Node):
    """The ``*`` of ``a.*`` or ``a[*]``; only ever the ``key`` of an :class:`Index`."""


@dataclass(frozen=True, slots=True)
class Index(Node):
    """``target.key`` (``dotted``, key is a string :class:`Literal` or :class:`Wildcard`)
    or ``target[key]``."""

    target: Node
    key: Node
    dotted: bool = False

    def children(self) -> tuple[Node, ...]:
        return (self.target, self.key)


@dataclass(frozen=True, slots=True)
class Not(Node):
    """``!operand``."""

    operand: Node

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


COMPARISON_OPERATORS = ("==", "!=", "<", "<=", ">", ">=")


@dataclass(frozen=True, slots=True)
class Compare(Node):
    """``left op right`` for ``op`` in :data:`COMPARISON_OPERATORS`."""

    op: str
    left: Node
    right: Node

    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)


@dataclass(frozen=True, slots=True)
class And(Node):
    """``a && b && ...``: the first falsy operand, else the last one."""

    operands: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.operands


@dataclass(frozen=True, slots=True)
class Or(Node):
    """``a || b || ...``: the first truthy operand, else the last one."""

    operands: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.operands


@dataclass(frozen=True, slots=True)
class Call(Node):
    """``name(args...)``; ``name`` is kept as written, looked up case-insensitively."""

    name: str
    args: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.args


def walk(node: Node) -> Iterator[Node]:
    """Every node of the tree, parents before children (iterative: no recursion limit)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children()))


def depth(node: Node) -> int:
    """The number of nodes on the longest root-to-leaf path (a lone literal has depth 1)."""
    best = 0
    stack = [(node, 1)]
    while stack:
        current, level = stack.pop()
        best = max(best, level)
        stack.extend((child, level + 1) for child in current.children())
    return best


def referenced_contexts(node: Node) -> set[str]:
    """The lower-cased names of the contexts the expression reads, e.g. ``{"github"}``."""
    return {n.name.lower() for n in walk(node) if isinstance(n, NamedValue)}


def referenced_functions(node: Node) -> set[str]:
    """The lower-cased names of the functions the expression calls, e.g. ``{"success"}``."""
    return {n.name.lower() for n in walk(node) if isinstance(n, Call)}
