"""Errors raised by the ``${{ }}`` expression language.

Exception tree (under :class:`vmrunner.errors.UserInputError`)::

    ExpressionError              the expression cannot be evaluated (evaluation errors)
    └── ExpressionSyntaxError    the expression cannot be lexed or parsed; has a position

Messages follow GitHub's own wording (for example ``Unexpected symbol: ')'. Located at
position 5 within expression: 1 < )``), so users see what they would see on GitHub.
"""

from __future__ import annotations

from typing import Literal

from vmrunner.errors import UserInputError

SyntaxKind = Literal["lexing", "parsing"]


class ExpressionError(UserInputError):
    """An expression that cannot be evaluated: a bad ``format`` string, invalid JSON for
    ``fromJSON``, a status function used where no job status is known, and so on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ExpressionSyntaxError(ExpressionError):
    """An expression that cannot be lexed or parsed.

    ``pos`` is the 0-based character offset in the source it was raised for (the inside of
    ``${{ }}`` for :func:`parse`, the whole text for template functions); ``line`` and
    ``column`` are 1-based and count from the start of ``source``. ``kind`` is ``"lexing"``
    for a malformed token and ``"parsing"`` for everything else.
    """

    def __init__(
        self, message: str, pos: int, *, source: str = "", kind: SyntaxKind = "parsing"
    ) -> None:
        super().__init__(message)
        self.pos = pos
        self.source = source
        self.kind: SyntaxKind = kind
        before = source[:pos]
        self.line = before.count("\n") + 1
        self.column = pos - (before.rfind("\n") + 1) + 1

    def shifted(self, offset: int, source: str) -> ExpressionSyntaxError:
        """The same error with ``pos`` moved by ``offset`` into the enclosing ``source``."""
        return ExpressionSyntaxError(self.message, self.pos + offset, source=source, kind=self.kind)
