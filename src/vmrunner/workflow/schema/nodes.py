"""The workflow tree as the schema sees it: plain data, JSON paths back to nodes, and
the problem record. Shared by the fast path and the explanations; imports neither."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from vmrunner.workflow.loader import MappingNode, Node, Pos, ScalarNode, SequenceNode

PathItem = str | int


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    """One schema violation: where it is, what is wrong, and the path to the node."""

    pos: Pos
    message: str
    path: tuple[PathItem, ...]


def as_text(value: Any) -> str:
    """A scalar as GitHub turns it into a string (null is ``''``, booleans lower case)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def is_scalar(instance: Any) -> bool:
    """Whether ``instance`` is accepted where the schema says ``string`` (any scalar)."""
    return instance is None or isinstance(instance, str | int | float)


def to_data(node: Node) -> Any:
    """The tree as plain JSON-like data (dicts, lists, scalars) for the validator."""
    if isinstance(node, ScalarNode):
        return node.value
    if isinstance(node, SequenceNode):
        return [to_data(item) for item in node.items]
    return {key.text: to_data(value) for key, value in node.pairs}


def node_at(root: Node, path: Iterable[PathItem]) -> Node:
    """The node at a JSON path, or the deepest node that exists along it."""
    node = root
    for item in path:
        child: Node | None = None
        if isinstance(node, MappingNode) and isinstance(item, str):
            child = node.get(item)
        elif isinstance(node, SequenceNode) and isinstance(item, int) and item < len(node.items):
            child = node.items[item]
        if child is None:
            return node
        node = child
    return node


def key_pos(root: Node, path: Sequence[PathItem], key: str) -> Pos:
    """The position of ``key`` in the mapping at ``path`` (the mapping's, if absent)."""
    node = node_at(root, path)
    if isinstance(node, MappingNode) and (key_node := node.key_node(key)) is not None:
        return key_node.pos
    return node.pos
