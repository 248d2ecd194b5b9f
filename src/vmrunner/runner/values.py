"""Evaluating the parts of a workflow GitHub evaluates at run time.

The model keeps run-time values as loader nodes; :func:`node_value` turns one into plain
data, evaluating every ``${{ }}`` in its strings. Pure code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from vmrunner.workflow.expressions import Functions, JobStatus, evaluate, to_bool, to_string
from vmrunner.workflow.expressions import evaluate_template as _template
from vmrunner.workflow.loader import MappingNode, Node, ScalarNode, SequenceNode
from vmrunner.workflow.plan import implicit_success


def template(text: str, contexts: Mapping[str, Any], functions: Functions | None = None) -> Any:
    """A string that may hold ``${{ }}`` (returned unchanged when it holds none)."""
    return _template(text, contexts, functions=functions) if "${{" in text else text


def node_value(
    node: Node | None, contexts: Mapping[str, Any], functions: Functions | None = None
) -> Any:
    """``node`` as plain data with every expression evaluated (None for no node).
    Raises ``ExpressionError``."""
    if node is None:
        return None
    if isinstance(node, ScalarNode):
        return (
            template(node.value, contexts, functions) if isinstance(node.value, str) else node.value
        )
    if isinstance(node, SequenceNode):
        return [node_value(item, contexts, functions) for item in node.items]
    return {
        to_string(template(k.text, contexts, functions)): node_value(v, contexts, functions)
        for k, v in node.pairs
    }


def text_value(
    node: Node | None,
    contexts: Mapping[str, Any],
    default: str = "",
    functions: Functions | None = None,
) -> str:
    """``node`` evaluated and converted to a string (``default`` for no node)."""
    value = node_value(node, contexts, functions)
    return default if value is None else to_string(value)


def env_value(
    node: Node | None, contexts: Mapping[str, Any], functions: Functions | None = None
) -> dict[str, str]:
    """An ``env:`` mapping (evaluated in order, values as strings); {} for none."""
    if not isinstance(node, MappingNode):
        return {}
    return {
        k.text: "" if (v := node_value(value, contexts, functions)) is None else to_string(v)
        for k, value in node.pairs
    }


def number_value(
    node: Node | None, contexts: Mapping[str, Any], functions: Functions | None = None
) -> float | None:
    """A number (``timeout-minutes``, ``max-parallel``) or None when absent."""
    value = node_value(node, contexts, functions)
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        from vmrunner.workflow.expressions import ExpressionError

        raise ExpressionError(f"expected a number, got {value!r}") from None


def flag_value(
    node: Node | None,
    contexts: Mapping[str, Any],
    default: bool = False,
    functions: Functions | None = None,
) -> bool:
    """A boolean (``continue-on-error``, ``fail-fast``)."""
    value = node_value(node, contexts, functions)
    return default if value is None else to_bool(value)


def condition(
    if_node: Node | None,
    contexts: Mapping[str, Any],
    job_status: JobStatus,
    functions: Functions | None = None,
) -> bool:
    """A step's ``if:`` with the implicit ``success()``, against the job's status
    (``functions`` gives ``hashFiles``; its ``job_status`` is replaced)."""
    source = None if if_node is None else to_string(getattr(if_node, "value", "")) or None
    if isinstance(if_node, ScalarNode) and isinstance(if_node.value, bool):
        source = "true" if if_node.value else "false"
    expr = implicit_success(source)
    return to_bool(
        evaluate(expr, contexts, functions=replace(functions or Functions(), job_status=job_status))
    )
