"""Print an expression tree back as source.

``unparse`` emits the fewest parentheses that keep the tree's shape, so
``parse(unparse(tree))`` gives back an equal tree (positions aside). It prints numbers
so that they read back as the same double, and strings with ``''`` escapes.
"""

from __future__ import annotations

import math

from .lexer import is_identifier
from .nodes import (
    And,
    Call,
    Compare,
    Index,
    Literal,
    LiteralValue,
    NamedValue,
    Node,
    Not,
    Or,
    Wildcard,
)

_OR, _AND, _EQUALITY, _RELATIONAL, _NOT, _POSTFIX = range(1, 7)


def _precedence(node: Node) -> int:
    if isinstance(node, Or):
        return _OR
    if isinstance(node, And):
        return _AND
    if isinstance(node, Compare):
        return _EQUALITY if node.op in ("==", "!=") else _RELATIONAL
    if isinstance(node, Not):
        return _NOT
    return _POSTFIX


def _wrap(node: Node, minimum: int) -> str:
    text = unparse(node)
    return text if _precedence(node) >= minimum else f"({text})"


def literal_source(value: LiteralValue) -> str:
    """Source text that lexes to ``value``."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(float(value))


def _index(node: Index) -> str:
    target = unparse(node.target)
    if _precedence(node.target) < _POSTFIX or isinstance(node.target, Literal):
        target = f"({target})"
    key = node.key
    if isinstance(key, Wildcard):
        return f"{target}.*" if node.dotted else f"{target}[*]"
    name = key.value if isinstance(key, Literal) and isinstance(key.value, str) else ""
    if node.dotted and is_identifier(name):
        return f"{target}.{name}"
    return f"{target}[{unparse(key)}]"


def unparse(node: Node) -> str:
    """Source text for ``node`` (see the module docstring)."""
    if isinstance(node, Literal):
        return literal_source(node.value)
    if isinstance(node, NamedValue):
        return node.name
    if isinstance(node, Wildcard):
        return "*"
    if isinstance(node, Index):
        return _index(node)
    if isinstance(node, Not):
        return "!" + _wrap(node.operand, _NOT)
    if isinstance(node, Compare):
        level = _precedence(node)
        return f"{_wrap(node.left, level)} {node.op} {_wrap(node.right, level + 1)}"
    if isinstance(node, And | Or):
        op, level = (" && ", _AND) if isinstance(node, And) else (" || ", _OR)
        return op.join(_wrap(operand, level + 1) for operand in node.operands)
    if isinstance(node, Call):
        return f"{node.name}({', '.join(unparse(arg) for arg in node.args)})"
    raise TypeError(f"not an expression node: {node!r}")
