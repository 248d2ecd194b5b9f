"""The built-in functions of ``${{ }}`` expressions, with GitHub's arity and semantics.

Names are case-insensitive. Each function receives its arguments as thunks (zero-argument
callables) so that it evaluates only what it needs, as GitHub does: ``case`` stops at the
first true predicate, ``join`` reads its separator only for two or more items.

The functions that depend on the job (``success``, ``always``, ``failure``, ``cancelled``
and ``hashFiles``) read a :class:`Functions` object injected by the caller; without it
they raise :class:`ExpressionError`. Nothing here does I/O: ``hashFiles`` calls the
injected callable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .coerce import (
    as_sequence,
    fold,
    format_json_number,
    is_primitive,
    kind_of,
    loose_equals,
    to_string,
)
from .errors import ExpressionError
from .formatting import Thunk, format_string
from .limits import check_string

JobStatus = Literal["success", "failure", "cancelled"]
JOB_STATUSES: tuple[JobStatus, ...] = ("success", "failure", "cancelled")


@dataclass(frozen=True, slots=True)
class Functions:
    """What the job-dependent functions need.

    ``job_status`` (``"success"``, ``"failure"`` or ``"cancelled"``) enables ``success()``,
    ``always()``, ``failure()`` and ``cancelled()``; leave it ``None`` where GitHub does not
    allow status functions. ``hash_files`` receives the patterns given to ``hashFiles(...)``
    as strings and returns the hash; it should raise :class:`ExpressionError` for bad input.
    """

    job_status: JobStatus | None = None
    hash_files: Callable[[list[str]], str] | None = None

    def __post_init__(self) -> None:
        if self.job_status is not None and self.job_status not in JOB_STATUSES:
            raise ValueError(f"job_status must be one of {JOB_STATUSES}, not {self.job_status!r}")


@dataclass(frozen=True, slots=True)
class CallEnv:
    """What a function sees besides its arguments."""

    functions: Functions | None


Impl = Callable[[CallEnv, Sequence[Thunk]], Any]


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A function's canonical name, arity and implementation."""

    name: str
    min_args: int
    max_args: int
    impl: Impl
    odd_args: bool = False


def _contains(env: CallEnv, args: Sequence[Thunk]) -> bool:
    haystack, needle = args[0](), args[1]()
    if is_primitive(haystack):
        return fold(to_string(needle)) in fold(to_string(haystack))
    items = as_sequence(haystack)
    return items is not None and any(loose_equals(needle, item) for item in items)


def _affix(test: Callable[[str, str], bool]) -> Impl:
    def impl(env: CallEnv, args: Sequence[Thunk]) -> bool:
        text, affix = args[0](), args[1]()
        if not (is_primitive(text) and is_primitive(affix)):
            return False
        return test(fold(to_string(text)), fold(to_string(affix)))

    return impl


def _join(env: CallEnv, args: Sequence[Thunk]) -> str:
    items = args[0]()
    sequence = as_sequence(items)
    if sequence is None:
        return to_string(items) if is_primitive(items) else ""
    separator = ","
    if len(sequence) > 1 and len(args) > 1:
        given = args[1]()
        separator = to_string(given) if is_primitive(given) else separator
    parts: list[str] = []
    length = 0
    for index, item in enumerate(sequence):
        text = to_string(item) if index == 0 else separator + to_string(item)
        length += len(text)
        check_string(length)
        parts.append(text)
    return "".join(parts)


def _to_json(env: CallEnv, args: Sequence[Thunk]) -> str:
    try:
        text = to_json(args[0]())
    except RecursionError:
        raise ExpressionError("toJSON: the value is nested too deeply") from None
    check_string(len(text))
    return text


def _from_json(env: CallEnv, args: Sequence[Thunk]) -> Any:
    text = to_string(args[0]())
    try:
        return json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise ExpressionError(f"Error parsing fromJson: {exc}") from None
    except RecursionError:
        raise ExpressionError("Error parsing fromJson: the JSON is nested too deeply") from None


def _case(env: CallEnv, args: Sequence[Thunk]) -> Any:
    for index in range(0, len(args) - 1, 2):
        predicate = args[index]()
        if not isinstance(predicate, bool):
            raise ExpressionError("case predicate must evaluate to a boolean value")
        if predicate:
            return args[index + 1]()
    return args[-1]()


def _status(name: str, test: Callable[[JobStatus], bool]) -> Impl:
    def impl(env: CallEnv, args: Sequence[Thunk]) -> bool:
        status = env.functions.job_status if env.functions else None
        if status is None:
            raise ExpressionError(f"{name}() is not available here: no job status is known")
        return test(status)

    return impl


def _hash_files(env: CallEnv, args: Sequence[Thunk]) -> str:
    hasher = env.functions.hash_files if env.functions else None
    if hasher is None:
        raise ExpressionError("hashFiles() is not available here")
    return hasher([to_string(arg()) for arg in args])


def _format(env: CallEnv, args: Sequence[Thunk]) -> str:
    return format_string(to_string(args[0]()), args[1:])


_MANY = 255
_SPECS = (
    FunctionSpec("contains", 2, 2, _contains),
    FunctionSpec("startsWith", 2, 2, _affix(str.startswith)),
    FunctionSpec("endsWith", 2, 2, _affix(str.endswith)),
    FunctionSpec("format", 1, _MANY, _format),
    FunctionSpec("join", 1, 2, _join),
    FunctionSpec("toJSON", 1, 1, _to_json),
    FunctionSpec("fromJSON", 1, 1, _from_json),
    FunctionSpec("case", 3, 2**31 - 1, _case, odd_args=True),
    FunctionSpec("hashFiles", 1, _MANY, _hash_files),
    FunctionSpec("success", 0, 0, _status("success", lambda s: s == "success")),
    FunctionSpec("always", 0, 0, _status("always", lambda s: True)),
    FunctionSpec("failure", 0, 0, _status("failure", lambda s: s == "failure")),
    FunctionSpec("cancelled", 0, 0, _status("cancelled", lambda s: s == "cancelled")),
)
FUNCTIONS: Mapping[str, FunctionSpec] = {spec.name.lower(): spec for spec in _SPECS}
STATUS_FUNCTIONS = frozenset({"success", "always", "failure", "cancelled"})


def lookup(name: str) -> FunctionSpec | None:
    """The function called ``name`` (case-insensitive), or None."""
    return FUNCTIONS.get(name.lower())


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r"}
_ESCAPES["\t"] = "\\t"


def _json_string(text: str) -> str:
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char < " " or char in "\x85\u2028\u2029":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def to_json(value: Any, indent: str = "") -> str:
    """``value`` as GitHub's ``toJSON`` writes it: indented by two spaces, ``": "``."""
    kind = kind_of(value)
    if kind in ("Null", "Boolean"):
        return "null" if value is None else ("true" if value else "false")
    if kind == "Number":
        return format_json_number(value)
    if kind == "String":
        return _json_string(value)
    inner = indent + "  "
    if kind == "Array":
        items = [inner + to_json(item, inner) for item in value]
        return "[\n" + ",\n".join(items) + f"\n{indent}]" if items else "[]"
    pairs = [f"{inner}{_json_string(str(k))}: {to_json(v, inner)}" for k, v in value.items()]
    return "{\n" + ",\n".join(pairs) + f"\n{indent}}}" if pairs else "{}"
