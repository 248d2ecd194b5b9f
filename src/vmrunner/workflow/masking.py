"""Secret masking of streamed output, on UTF-8 bytes.

Pure code. Like the runner's ``SecretMasker``, every occurrence of every registered value
is found (overlapping ones included), the covered ranges are merged (overlapping or
touching), and each merged range becomes ``***``. So overlapping secrets are masked
completely, and ``secretsecret`` gives one ``***``.

Streaming: :meth:`Masker.feed` returns the masked output as early as that is safe and
holds back only the minimal tail: the longest suffix that is a proper prefix of some
secret (it may become a secret with the next chunk), plus a masked range touching it (so
that it merges as it would have). The concatenated output is therefore exactly the mask
of the concatenated input, however the input is split. :meth:`Masker.finish` flushes.
One exception bounds memory: when more than ``hold_limit`` bytes of touching or
overlapping secrets pile up, they are emitted as ``***`` without waiting to merge: the
output may then show two ``***`` where one-shot masking gives one, and if the run ends
inside an overlapping secret a few of its last bytes may show.

Registering: empty and whitespace-only values are ignored. A multi-line value is also
registered line by line (as GitHub does), so each line stays masked when a program
prints the lines apart. Does not register encoded forms (base64, URL, JSON escapes) as
the runner does, and does not split output on UTF-8 character boundaries: a multi-byte
character may straddle two returned chunks (decode incrementally).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = b"***"
HOLD_LIMIT = 64 * 1024
"""Bytes a masker holds back at most beyond a partial secret (see :class:`Masker`)."""


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def mask_values(value: str | bytes) -> set[bytes]:
    """The byte strings registering ``value`` adds: itself and each line of it, minus
    empty and whitespace-only ones."""
    data = _as_bytes(value)
    candidates = {data, *re.split(rb"\r\n|\r|\n", data)}
    return {c for c in candidates if c.strip()}


class Masker:
    """Replaces registered values with ``***`` in a byte stream (one per output stream).

    Pure, but stateful: it holds the registered values and the held-back tail.
    """

    def __init__(
        self,
        values: Iterable[str | bytes] = (),
        *,
        replacement: bytes = MASK,
        hold_limit: int = HOLD_LIMIT,
    ) -> None:
        self._secrets: set[bytes] = set()
        self._replacement = replacement
        self._hold_limit = hold_limit
        self._pending = b""
        for value in values:
            self.add(value)

    @property
    def values(self) -> frozenset[bytes]:
        """Every registered byte string."""
        return frozenset(self._secrets)

    def add(self, value: str | bytes) -> None:
        """Register a value (see :func:`mask_values`); it applies to output not yet
        returned, including the held-back tail."""
        self._secrets |= mask_values(value)

    def feed(self, chunk: bytes) -> bytes:
        """Mask ``chunk`` following what came before; returns the output now safe."""
        data = self._pending + chunk
        cut, ranges = self._safe_cut(data)
        self._pending = data[cut:]
        return self._render(data[:cut], ranges)

    def finish(self) -> bytes:
        """Flush the held-back tail (the stream ended); the masker can then be reused."""
        data, self._pending = self._pending, b""
        return self.mask(data)

    def mask(self, data: bytes) -> bytes:
        """Mask a complete piece of output; does not touch the stream state."""
        return self._render(data, self._ranges(data))

    def mask_text(self, text: str) -> str:
        """:meth:`mask` for text (UTF-8 round trip)."""
        return self.mask(text.encode("utf-8")).decode("utf-8", errors="surrogateescape")

    def _ranges(self, data: bytes) -> list[tuple[int, int]]:
        """Merged ``[start, end)`` ranges of every occurrence in ``data``, sorted."""
        hits: list[tuple[int, int]] = []
        for secret in self._secrets:
            start = data.find(secret)
            while start >= 0:
                hits.append((start, start + len(secret)))
                start = data.find(secret, start + 1)
        hits.sort()
        merged: list[tuple[int, int]] = []
        for start, end in hits:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

    def _partial_start(self, data: bytes) -> int:
        """The smallest index whose suffix is a proper prefix of some secret, or len."""
        best = len(data)
        for secret in self._secrets:
            first = secret[:1]
            start = data.find(first, max(0, len(data) - len(secret) + 1))
            while 0 <= start < best:
                if secret.startswith(data[start:]):
                    best = start
                    break
                start = data.find(first, start + 1)
        return best

    def _safe_cut(self, data: bytes) -> tuple[int, list[tuple[int, int]]]:
        """Where to stop emitting, and the (merged) ranges before it."""
        ranges = self._ranges(data)
        partial = self._partial_start(data)
        kept = [r for r in ranges if r[1] < partial]
        cut = partial
        if len(kept) < len(ranges) and ranges[len(kept)][0] < partial:
            cut = ranges[len(kept)][0]  # a range touching the tail may still grow
        if len(data) - cut > self._hold_limit:
            # a long run of touching secrets: emit it, clipped where a secret may start
            cut = partial
            kept = [(start, min(end, partial)) for start, end in ranges if start < partial]
        return cut, kept

    def _render(self, data: bytes, ranges: list[tuple[int, int]]) -> bytes:
        out: list[bytes] = []
        last = 0
        for start, end in ranges:
            out += [data[last:start], self._replacement]
            last = end
        out.append(data[last:])
        return b"".join(out)
