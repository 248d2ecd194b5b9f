"""GitHub Actions ``${{ }}`` expressions: lexer, parser, evaluator, templates.

Pure code: no I/O, no clock. ``hashFiles`` and the status functions read what the caller
injects through :class:`Functions`.

Typical use::

    node = parse("github.event_name == 'push' && success()")
    referenced_contexts(node)                      # {"github"}
    evaluate(node, {"github": {...}}, functions=Functions(job_status="success"))
    evaluate_template("v${{ matrix.version }}", {"matrix": {"version": 3}})  # "v3"

Values are JSON-ish Python values (None, bool, int/float, str, list, dict); see
:mod:`.coerce` for GitHub's conversion rules and :mod:`.errors` for the error tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .coerce import kind_of, loose_equals, to_bool, to_number, to_string
from .errors import ExpressionError, ExpressionSyntaxError
from .evaluator import evaluate_node
from .functions import STATUS_FUNCTIONS, Functions, JobStatus, to_json
from .limits import MAX_DEPTH, MAX_LENGTH, MAX_MEMORY
from .nodes import Node, depth, referenced_contexts, referenced_functions, walk
from .parser import parse
from .printer import unparse
from .template import evaluate_template, find_expressions, parse_template


def evaluate(
    node_or_src: Node | str,
    contexts: Mapping[str, Any],
    *,
    functions: Functions | None = None,
) -> Any:
    """Evaluate an expression (a tree, or the source inside ``${{ }}``) against contexts.

    Source is parsed with the keys of ``contexts`` as the allowed named-values, so an
    unknown context is an ExpressionSyntaxError, as on GitHub. The result may share
    structure with ``contexts``: do not mutate it. Raises ExpressionError (or its
    subclass ExpressionSyntaxError) and nothing else, except what an injected
    ``hash_files`` raises.
    """
    node = (
        parse(node_or_src, allowed_contexts=contexts)
        if isinstance(node_or_src, str)
        else node_or_src
    )
    return evaluate_node(node, contexts, functions)


__all__ = [
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_MEMORY",
    "STATUS_FUNCTIONS",
    "ExpressionError",
    "ExpressionSyntaxError",
    "Functions",
    "JobStatus",
    "Node",
    "depth",
    "evaluate",
    "evaluate_template",
    "find_expressions",
    "kind_of",
    "loose_equals",
    "parse",
    "parse_template",
    "referenced_contexts",
    "referenced_functions",
    "to_bool",
    "to_json",
    "to_number",
    "to_string",
    "unparse",
    "walk",
]
