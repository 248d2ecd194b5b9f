"""Secret masking of streamed output, on UTF-8 bytes.

Pure code. Like the runner's ``SecretMasker``, every occurrence of every registered value
is found (overlapping ones included), the covered ranges are merged (overlapping or
touching), and each merged range becomes ``***``. So overlapping secrets are masked
completely, and ``secretsecret`` gives one ``***``.

Cost: the values are compiled into one Aho-Corasick automaton that records, for each
state, the longest value ending there. A scan makes one goto step per input byte plus
failure steps that never outnumber the goto steps, and at most one range per byte, so
masking a line is linear in its length whatever the number and length of the values.
A compiled trie of the values' first :data:`PREFIX` bytes finds the first place a value
may start (at C speed, constant work per byte), so lines without a candidate skip the
automaton. The automaton is rebuilt, lazily, after values are added; :meth:`Masker.add`
is capped (:data:`MAX_MASKS` values, :data:`MAX_MASK_BYTES` bytes per masker) so that the
rebuilds a guest can cause stay bounded. :meth:`Masker.child` gives a masker that adds its
own values to a parent's without rebuilding the parent's automaton (a job's ``add-mask``
values on top of the run's secrets): a line is scanned once per masker in the chain.

Short values: GitHub's runner masks every value that is not empty or whitespace, however
short (``::add-mask::a`` turns every ``a`` in later output into ``***``); so does this
masker, as hiding too much is safer than showing a secret. Masks never apply to the keys
of a result document (see ``services.workflows``), so a short mask cannot break one.

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
from collections import deque
from collections.abc import Iterable

from vmrunner.errors import UserInputError

MASK = b"***"
HOLD_LIMIT = 64 * 1024
"""Bytes a masker holds back at most beyond a partial secret (see :class:`Masker`)."""
MAX_MASKS = 256
"""Values :meth:`Masker.add` accepts per masker (a multi-line value counts once per line)."""
MAX_MASK_BYTES = 128 * 1024
"""Bytes of values :meth:`Masker.add` accepts per masker, all values together."""
PREFIX = 3
"""Bytes of each value the prefilter looks for."""

Range = tuple[int, int]


class MaskLimitError(UserInputError):
    """An ``add-mask`` passed :data:`MAX_MASKS` or :data:`MAX_MASK_BYTES`: it was refused."""


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def mask_values(value: str | bytes) -> set[bytes]:
    """The byte strings registering ``value`` adds: itself and each line of it, minus
    empty and whitespace-only ones."""
    data = _as_bytes(value)
    candidates = {data, *re.split(rb"\r\n|\r|\n", data)}
    return {c for c in candidates if c.strip()}


def merge_ranges(ranges: Iterable[Range]) -> list[Range]:
    """``ranges`` sorted, with overlapping or touching ones merged."""
    merged: list[Range] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


class _Automaton:
    """Aho-Corasick over a fixed set of non-empty byte strings (see the module docstring)."""

    def __init__(self, patterns: Iterable[bytes]) -> None:
        self.goto: list[dict[int, int]] = [{}]
        self.depth = [0]
        self.out = [0]  # the longest pattern that ends in this state, 0 for none
        firsts: set[bytes] = set()
        for pattern in patterns:
            self._insert(pattern)
            firsts.add(pattern[:PREFIX])
        self.fail = [0] * len(self.goto)
        self._link()
        self.longest = max(self.depth)
        self.prefilter = re.compile(_trie_regex(firsts), re.DOTALL)

    def _insert(self, pattern: bytes) -> None:
        state = 0
        for byte in pattern:
            nxt = self.goto[state].get(byte)
            if nxt is None:
                nxt = len(self.goto)
                self.goto[state][byte] = nxt
                self.goto.append({})
                self.depth.append(self.depth[state] + 1)
                self.out.append(0)
            state = nxt
        self.out[state] = len(pattern)

    def _link(self) -> None:
        """Failure links and inherited outputs, breadth first."""
        goto, fail, out = self.goto, self.fail, self.out
        todo = deque(goto[0].values())
        while todo:
            state = todo.popleft()
            for byte, child in goto[state].items():
                back = fail[state]
                while back and byte not in goto[back]:
                    back = fail[back]
                fail[child] = goto[back].get(byte, 0)
                out[child] = max(out[child], out[fail[child]])
                todo.append(child)

    def ranges(self, data: bytes) -> list[Range]:
        """Merged ``[start, end)`` ranges covered by occurrences in ``data``, sorted."""
        found = self.prefilter.search(data)
        return [] if found is None else self._scan(data, found.start())

    def _scan(self, data: bytes, pos: int) -> list[Range]:
        goto, fail, out = self.goto, self.fail, self.out
        state = 0
        merged: list[Range] = []
        for index, byte in enumerate(data[pos:], pos + 1):
            while state and byte not in goto[state]:
                state = fail[state]
            state = goto[state].get(byte, 0)
            if length := out[state]:
                start = index - length
                while merged and merged[-1][1] >= start:  # each range is popped once
                    start = min(start, merged.pop()[0])
                merged.append((start, index))
        return merged

    def partial_start(self, data: bytes) -> int:
        """The smallest index whose suffix is a proper prefix of some pattern, or len."""
        goto, fail = self.goto, self.fail
        state = 0
        for byte in data[max(0, len(data) - self.longest) :]:
            while state and byte not in goto[state]:
                state = fail[state]
            state = goto[state].get(byte, 0)
        while state and not goto[state]:  # a whole pattern that nothing extends
            state = fail[state]
        return len(data) - self.depth[state]


def _trie_regex(prefixes: set[bytes]) -> bytes:
    """A regex matching any of ``prefixes``, as a trie: constant work per position."""
    kept = {p for p in prefixes if not any(p[:n] in prefixes for n in range(1, len(p)))}
    trie: _Trie = {}
    for prefix in kept:
        node = trie
        for byte in prefix:
            node = node.setdefault(byte, {})
    return _node_regex(trie) if trie else rb"(?!)"


_Trie = dict[int, "_Trie"]


def _node_regex(node: _Trie) -> bytes:
    if not node:
        return b""
    alts = [re.escape(bytes([b])) + _node_regex(child) for b, child in sorted(node.items())]
    return alts[0] if len(alts) == 1 else b"(?:" + b"|".join(alts) + b")"


class Masker:
    """Replaces registered values with ``***`` in a byte stream (one per output stream).

    Pure, but stateful: it holds the registered values and the held-back tail.
    Values given to the constructor are trusted (a run's secrets) and not capped;
    :meth:`add` is (it serves the guest's ``add-mask``).
    """

    def __init__(
        self,
        values: Iterable[str | bytes] = (),
        *,
        replacement: bytes = MASK,
        hold_limit: int = HOLD_LIMIT,
        parent: Masker | None = None,
    ) -> None:
        self._secrets: set[bytes] = set()
        self._added = 0  # bytes and number of values registered through add()
        self._added_count = 0
        self._replacement = replacement
        self._hold_limit = hold_limit
        self._parent = parent
        self._automaton: _Automaton | None = None
        self._pending = b""
        for value in values:
            self._secrets |= mask_values(value)

    @property
    def values(self) -> frozenset[bytes]:
        """Every registered byte string (the parent's too)."""
        inherited = self._parent.values if self._parent is not None else frozenset()
        return inherited | self._secrets

    def child(self) -> Masker:
        """A masker with this one's values and its own :meth:`add`: for one job."""
        return Masker(replacement=self._replacement, hold_limit=self._hold_limit, parent=self)

    def add(self, value: str | bytes) -> None:
        """Register a value (see :func:`mask_values`); it applies to output not yet
        returned, including the held-back tail. Raises :class:`MaskLimitError` (and
        registers nothing) past :data:`MAX_MASKS` values or :data:`MAX_MASK_BYTES` bytes."""
        new = mask_values(value) - self._secrets
        if not new:
            return
        size = self._added + sum(len(v) for v in new)
        if self._added_count + len(new) > MAX_MASKS or size > MAX_MASK_BYTES:
            raise MaskLimitError(
                f"add-mask refused: a job may register at most {MAX_MASKS} mask values of "
                f"{MAX_MASK_BYTES} bytes in all (this one has {len(new)} values, "
                f"{size - self._added} bytes)"
            )
        self._secrets |= new
        self._added, self._added_count = size, self._added_count + len(new)
        self._automaton = None

    def _compiled(self) -> _Automaton | None:
        if self._automaton is None and self._secrets:
            self._automaton = _Automaton(self._secrets)
        return self._automaton

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
        data = text.encode("utf-8", errors="surrogateescape")
        return self.mask(data).decode("utf-8", errors="surrogateescape")

    def safe_length(self, data: bytes) -> int:
        """How much of ``data`` can be shown when what follows it is dropped: all but
        its longest suffix that is a proper prefix of some value, and any occurrence
        touching that suffix (so no occurrence is cut in two)."""
        partial = self._partial_start(data)
        touching = [start for start, end in self._ranges(data) if end >= partial]
        return min([partial, *touching[:1]])

    def _ranges(self, data: bytes) -> list[Range]:
        """Merged ``[start, end)`` ranges of every occurrence in ``data``, sorted."""
        automaton = self._compiled()
        own = automaton.ranges(data) if automaton is not None else []
        if self._parent is None:
            return own
        inherited = self._parent._ranges(data)
        return merge_ranges([*inherited, *own]) if own and inherited else own or inherited

    def _partial_start(self, data: bytes) -> int:
        """The smallest index whose suffix is a proper prefix of some secret, or len."""
        automaton = self._compiled()
        best = len(data) if automaton is None else automaton.partial_start(data)
        if self._parent is not None:
            best = min(best, self._parent._partial_start(data))
        return best

    def _safe_cut(self, data: bytes) -> tuple[int, list[Range]]:
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

    def _render(self, data: bytes, ranges: list[Range]) -> bytes:
        out: list[bytes] = []
        last = 0
        for start, end in ranges:
            out += [data[last:start], self._replacement]
            last = end
        out.append(data[last:])
        return b"".join(out)
