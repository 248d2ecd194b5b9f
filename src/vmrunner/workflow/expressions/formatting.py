"""GitHub's ``format()``: ``{N}`` placeholders, ``{{`` and ``}}`` escapes.

The scan is GitHub's own, so the same strings are rejected with the same messages: a
lone ``{`` or ``}``, a placeholder without a number, or a number past the arguments.
Format specifiers (``{0:x}``) are read but, as on GitHub, valid for no argument type.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .coerce import kind_of, to_string
from .errors import ExpressionError
from .limits import check_string

_MAX_ARG_INDEX = 255
Thunk = Callable[[], Any]


def _invalid(fmt: str) -> ExpressionError:
    return ExpressionError(f"The following format string is invalid: {fmt}")


def _read_index(fmt: str, start: int) -> tuple[int, int] | None:
    """The argument index starting at ``start`` and the offset after it, or None."""
    end = start
    while end < len(fmt) and fmt[end].isascii() and fmt[end].isdigit():
        end += 1
    digits = fmt[start:end].lstrip("0") or "0"
    if end == start or len(digits) > 3 or int(digits) > _MAX_ARG_INDEX:
        return None
    return int(digits), end


def _read_specifiers(fmt: str, start: int) -> tuple[str, int] | None:
    """Optional ``:specifiers`` then the closing ``}``: (specifiers, offset of ``}``)."""
    if fmt.startswith("}", start):
        return "", start
    if not fmt.startswith(":", start):
        return None
    out: list[str] = []
    index = start + 1
    while index < len(fmt):
        if fmt[index] != "}":
            out.append(fmt[index])
            index += 1
        elif fmt.startswith("}", index + 1):
            out.append("}")
            index += 2
        else:
            return "".join(out), index
    return None


def _placeholder(fmt: str, lbrace: int, rbrace: int) -> tuple[int, str, int] | None:
    """The placeholder at ``lbrace``: (argument index, specifiers, offset of ``}``)."""
    if rbrace <= lbrace + 1:
        return None
    index = _read_index(fmt, lbrace + 1)
    if index is None:
        return None
    specifiers = _read_specifiers(fmt, index[1])
    if specifiers is None:
        return None
    return index[0], specifiers[0], specifiers[1]


def _argument(fmt: str, args: Sequence[Thunk], index: int, specifiers: str) -> str:
    if index >= len(args):
        raise ExpressionError(
            f"The following format string references more arguments than were supplied: {fmt}"
        )
    if specifiers:
        kind = kind_of(args[index]())
        raise ExpressionError(
            f"The format specifiers '{specifiers}' are not valid for objects of type '{kind}'"
        )
    return to_string(args[index]())


def format_string(fmt: str, args: Sequence[Thunk]) -> str:
    """``format(fmt, *args)`` as GitHub evaluates it; raises ExpressionError.

    ``args`` are thunks: an argument is evaluated only when a placeholder uses it."""
    out: list[str] = []
    length = 0
    index = 0
    while index < len(fmt):
        lbrace, rbrace = fmt.find("{", index), fmt.find("}", index)
        if lbrace >= 0 and (rbrace < 0 or rbrace > lbrace):
            if fmt.startswith("{", lbrace + 1):
                piece, index = fmt[index : lbrace + 1], lbrace + 2
            else:
                found = _placeholder(fmt, lbrace, rbrace)
                if found is None:
                    raise _invalid(fmt)
                arg_index, specifiers, close = found
                piece = fmt[index:lbrace] + _argument(fmt, args, arg_index, specifiers)
                index = close + 1
        elif rbrace >= 0:
            if not fmt.startswith("}", rbrace + 1):
                raise _invalid(fmt)
            piece, index = fmt[index : rbrace + 1], rbrace + 2
        else:
            piece, index = fmt[index:], len(fmt)
        length += len(piece)
        check_string(length)
        out.append(piece)
    return "".join(out)
