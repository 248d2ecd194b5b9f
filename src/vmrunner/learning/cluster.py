"""Clustering of signature templates, after the Drain log-template miner.

Two templates belong together when they have the same number of tokens, the same
first token (their *bucket*) and at least ``threshold`` of their positions hold the
same token, where a wildcard ``<*>`` in the stored template matches anything. Merging
turns the positions that differ into ``<*>``: ``No module named 'a'`` and ``No module
named 'b'`` share a bucket, agree on 3 of 4 tokens (0.75) and merge into ``No module
named <*>``.

Tokens are whitespace-separated words; the line breaks of a multi-line template are
kept as a ``⏎`` token so that lines do not silently merge. Pure: the caller looks up
candidates by bucket (the store indexes them) and persists the merge.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

WILDCARD = "<*>"
NEWLINE = "⏎"
DEFAULT_THRESHOLD = 0.6
MAX_BUCKET_CHARS = 120


def tokens(template: str) -> tuple[str, ...]:
    """The tokens of ``template``, with a ``⏎`` token between lines."""
    out: list[str] = []
    for i, line in enumerate(template.split("\n")):
        if i:
            out.append(NEWLINE)
        out.extend(line.split())
    return tuple(out)


def detokenise(toks: Sequence[str]) -> str:
    """The inverse of ``tokens`` (whitespace inside a line collapses to one space)."""
    lines: list[list[str]] = [[]]
    for tok in toks:
        if tok == NEWLINE:
            lines.append([])
        else:
            lines[-1].append(tok)
    return "\n".join(" ".join(line) for line in lines)


def bucket(toks: Sequence[str]) -> str:
    """The bucket of a token sequence: its length and first token (``"4 No"``)."""
    first = toks[0] if toks else ""
    return f"{len(toks)} {first}"[:MAX_BUCKET_CHARS]


def similarity(template: Sequence[str], candidate: Sequence[str]) -> float:
    """The share of positions where the two agree (``<*>`` in ``template`` agrees with all).

    Returns 0.0 when the lengths differ or either is empty.
    """
    if len(template) != len(candidate) or not template:
        return 0.0
    same = sum(1 for a, b in zip(template, candidate, strict=True) if a in (b, WILDCARD))
    return same / len(template)


def merge(template: Sequence[str], other: Sequence[str]) -> tuple[str, ...]:
    """``template`` with every position where ``other`` differs replaced by ``<*>``.

    The ``⏎`` line breaks are never replaced. Both must have the same length.
    """
    if len(template) != len(other):
        raise ValueError("templates of different lengths cannot be merged")
    return tuple(a if a in (b, NEWLINE) else WILDCARD for a, b in zip(template, other, strict=True))


def best_match(
    toks: Sequence[str],
    candidates: Iterable[tuple[int, Sequence[str]]],
    threshold: float = DEFAULT_THRESHOLD,
) -> int | None:
    """The id of the most similar candidate at or above ``threshold``, else ``None``.

    Ties go to the candidate listed first (the caller lists the most frequent first).
    A candidate never matches across a line break in a different position.
    """
    best_id: int | None = None
    best_sim = threshold
    for cand_id, cand in candidates:
        if _newlines(cand) != _newlines(toks):
            continue
        sim = similarity(cand, toks)
        if sim > best_sim or (sim == best_sim and best_id is None):
            best_id, best_sim = cand_id, sim
    return best_id


def _newlines(toks: Sequence[str]) -> tuple[int, ...]:
    return tuple(i for i, t in enumerate(toks) if t == NEWLINE)
