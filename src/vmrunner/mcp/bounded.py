"""Bounded text for agents: what an MCP tool returns stays under a byte budget.

Long logs are cut to their useful part (the end of a log, or the lines around its first
error) and every cut says how much was cut and which ``get_logs`` call reads the rest.
Pure code: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_BUDGET = 16384
MIN_KEEP = 200  # a string is never cut below this many characters
ERROR_RE = re.compile(
    r"error|fail|fatal|panic|traceback|exception|denied|not found|no such|cannot|timed out",
    re.IGNORECASE,
)


def more_hint(run_id: str) -> str:
    """How to read more of run ``run_id`` (a tool call, never a shell command)."""
    return f"call get_logs(run_id={run_id!r}) to read more"


def cut_marker(cut: int, run_id: str) -> str:
    return f"[... {cut} characters cut; {more_hint(run_id)} ...]\n"


def keep_tail(text: str, limit: int, run_id: str) -> str:
    """``text`` if it fits in ``limit`` characters, else its end (from a line start) after
    a marker saying how much was cut. The result is at most ``limit`` characters long
    unless ``limit`` is smaller than the marker."""
    if len(text) <= limit:
        return text
    marker = cut_marker(len(text), run_id)
    room = max(0, limit - len(marker))
    tail = text[len(text) - room :] if room else ""
    newline = tail.find("\n")
    if 0 <= newline < len(tail) // 2:
        tail = tail[newline + 1 :]
    return cut_marker(len(text) - len(tail), run_id)[: max(0, limit - len(tail))] + tail


def keep_ends(text: str, limit: int, run_id: str) -> str:
    """``text`` if it fits, else its first third and last two thirds around a marker
    (the head says what ran, the tail how it ended); at most ``limit`` characters."""
    if len(text) <= limit:
        return text
    marker = f"\n{cut_marker(len(text), run_id)}"
    room = max(0, limit - len(marker))
    head, tail = room // 3, room - room // 3
    return (text[:head] + marker + text[len(text) - tail :])[:limit] if tail else marker[:limit]


@dataclass(frozen=True)
class Window:
    """Lines ``first``..``last`` (1-based, inclusive) of a log of ``total`` lines."""

    text: str
    first: int
    last: int
    total: int
    error_line: int | None = None

    @property
    def truncated(self) -> bool:
        return self.first > 1 or self.last < self.total


def tail_window(lines: Sequence[str], count: int) -> Window:
    """The last ``count`` lines."""
    start = max(0, len(lines) - count)
    return Window("\n".join(lines[start:]), start + 1, len(lines), len(lines))


def error_window(lines: Sequence[str], count: int) -> Window:
    """``count`` lines around the first line that looks like an error (a third before it,
    the rest after); the tail when no line does."""
    hit = next((i for i, line in enumerate(lines) if ERROR_RE.search(line)), None)
    if hit is None:
        return tail_window(lines, count)
    start = max(0, hit - count // 3)
    end = min(len(lines), start + count)
    start = max(0, min(start, end - count))
    return Window("\n".join(lines[start:end]), start + 1, end, len(lines), hit + 1)


def _size(doc: Any) -> int:
    return len(json.dumps(doc, ensure_ascii=False))


def _strings(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[int, tuple[Any, ...]]]:
    """(length, path) of every string in ``node``."""
    if isinstance(node, str):
        return [(len(node), path)]
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    return [found for key, value in items for found in _strings(value, (*path, key))]


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


def _set(node: Any, path: tuple[Any, ...], value: str) -> None:
    _get(node, path[:-1])[path[-1]] = value


def bound_document(doc: dict[str, Any], budget: int, run_id: str) -> dict[str, Any]:
    """A copy of ``doc`` whose JSON is at most ``budget`` characters, made by cutting its
    longest strings (logs) to their tails, longest first, each to no fewer than
    :data:`MIN_KEEP` characters. Keys, lists and other values are kept, so a document
    valid against a schema that bounds no string length stays valid. If even that does
    not fit, the document is returned as small as this can make it."""
    out: dict[str, Any] = json.loads(json.dumps(doc))
    excess = _size(out) - budget
    while excess > 0:
        longest = max(_strings(out), default=(0, ()))
        length, path = longest
        if length <= MIN_KEEP:
            break
        target = max(MIN_KEEP, length - excess - 16, length // 2 if length > 4 * MIN_KEEP else 0)
        _set(out, path, keep_tail(_get(out, path), min(target, length - 1), run_id))
        excess = _size(out) - budget
    return out
