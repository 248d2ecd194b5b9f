"""GitHub's limits on expressions: length, depth and memory."""

from __future__ import annotations

from .errors import ExpressionError

MAX_LENGTH = 21000
"""Characters in one expression (the inside of ``${{ }}``)."""

MAX_DEPTH = 50
"""Nodes on the longest root-to-leaf path of an expression tree."""

MAX_MEMORY = 1024 * 1024
"""Bytes an evaluation may hold in intermediate results, counted as GitHub does."""


def value_bytes(value: object) -> int:
    """The memory GitHub charges for a result: strings by length, anything else a little."""
    return string_bytes(len(value)) if isinstance(value, str) else 24


def string_bytes(length: int) -> int:
    """The memory GitHub charges for a string of ``length`` characters."""
    return 26 + 2 * length


def memory_error() -> ExpressionError:
    """The error for an evaluation that holds more than :data:`MAX_MEMORY` bytes."""
    return ExpressionError("The maximum allowed memory size was exceeded")


def check_string(length: int) -> None:
    """Raise the memory error when one string of ``length`` characters is too large."""
    if string_bytes(length) > MAX_MEMORY:
        raise memory_error()
