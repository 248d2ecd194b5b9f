"""Strings that contain ``${{ }}``: finding, parsing and evaluating the expressions in them.

``find_expressions`` scans as GitHub does: after ``${{`` the first ``}}`` outside a
single-quoted string closes the expression (``''`` inside a string is an escaped quote,
which the toggling handles).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .coerce import to_string
from .errors import ExpressionSyntaxError
from .evaluator import evaluate_node
from .functions import Functions
from .nodes import Node
from .parser import parse

OPEN = "${{"
CLOSE = "}}"
_NOT_CLOSED = (
    "The expression is not closed. An unescaped ${{ sequence was found, "
    "but the closing }} sequence was not found."
)


def _close_of(text: str, start: int) -> int:
    """The offset of the ``}}`` closing the expression opened at ``start``, or -1."""
    in_string = False
    for i in range(start + len(OPEN), len(text)):
        char = text[i]
        if char == "'":
            in_string = not in_string
        elif not in_string and char == "}" and text[i - 1] == "}":
            return i - 1
    return -1


def find_expressions(text: str) -> list[tuple[int, int, str]]:
    """Every ``${{ ... }}`` in ``text`` as ``(start, end, inner)``: ``text[start:end]`` is
    the whole span, ``inner`` the text between the braces. Raises ExpressionSyntaxError
    (at the ``${{``) for an expression that is not closed. Does not parse ``inner``."""
    spans: list[tuple[int, int, str]] = []
    start = text.find(OPEN)
    while start >= 0:
        close = _close_of(text, start)
        if close < 0:
            raise ExpressionSyntaxError(_NOT_CLOSED, start, source=text)
        spans.append((start, close + len(CLOSE), text[start + len(OPEN) : close]))
        start = text.find(OPEN, close + len(CLOSE))
    return spans


def parse_template(text: str, *, allowed_contexts: Iterable[str] | None = None) -> list[str | Node]:
    """``text`` split into literal strings and parsed expressions, in order (empty literal
    pieces dropped). Syntax errors carry positions in ``text``."""
    pieces: list[str | Node] = []
    last = 0
    for start, end, inner in find_expressions(text):
        if start > last:
            pieces.append(text[last:start])
        try:
            pieces.append(parse(inner, allowed_contexts=allowed_contexts))
        except ExpressionSyntaxError as exc:
            raise exc.shifted(start + len(OPEN), text) from None
        last = end
    if last < len(text):
        pieces.append(text[last:])
    return pieces


def evaluate_template(
    text: str, contexts: Mapping[str, Any], *, functions: Functions | None = None
) -> Any:
    """Evaluate a string that may contain ``${{ }}``.

    A string that is exactly one expression gives that expression's value, whatever its
    type; otherwise each expression's value is converted with ``to_string`` and spliced
    into the text (a string without expressions comes back unchanged). Every expression
    is parsed before any is evaluated.
    """
    pieces = parse_template(text, allowed_contexts=contexts)
    if len(pieces) == 1 and not isinstance(pieces[0], str):
        return evaluate_node(pieces[0], contexts, functions)
    return "".join(
        piece if isinstance(piece, str) else to_string(evaluate_node(piece, contexts, functions))
        for piece in pieces
    )
