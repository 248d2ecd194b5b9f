"""Masking: every secret and every ``::add-mask::`` value becomes ``***``.

One :class:`Masker` per run, shared by its jobs; everything that reaches the terminal,
a log or a result goes through :meth:`Masker.mask` first. Pure code.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MASK = "***"


class Masker:
    """The set of values to hide. Longer values are replaced first, so that a value
    containing another is hidden whole. A multi-line value is also hidden line by line
    (output is masked one line at a time)."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._ordered: list[str] = []
        for value in values:
            self.add(value)

    def add(self, value: str) -> None:
        """Hide ``value`` from now on (blank values and blank lines are ignored)."""
        parts = {value, *value.splitlines()}
        new = {p for p in parts if p.strip() and p not in self._values}
        if new:
            self._values |= new
            self._ordered = sorted(self._values, key=len, reverse=True)

    def mask(self, text: str) -> str:
        """``text`` with every known value replaced by ``***``."""
        for value in self._ordered:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def mask_tree(self, data: Any) -> Any:
        """A copy of JSON-like ``data`` with every string (keys too) masked."""
        if isinstance(data, str):
            return self.mask(data)
        if isinstance(data, dict):
            return {self.mask_tree(k): self.mask_tree(v) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self.mask_tree(v) for v in data]
        return data
