"""``strategy.matrix`` expansion, the ``strategy`` context and matrix job names.

Pure code. :func:`expand_matrix` follows GitHub's documented algorithm ("Using a matrix
for your jobs"):

1. The *vectors* (every key but ``include`` and ``exclude``) are multiplied out in the
   order they are written; the last vector varies fastest.
2. ``exclude`` removes every combination that matches all the keys an exclude entry lists
   (a partial match is enough). An exclude key that is not a vector is an error.
3. ``include`` entries are applied in order. An entry is merged into every *original*
   combination (one produced by steps 1-2) whose original values it does not change;
   values added by an earlier include may be overwritten. An entry that fits no original
   combination becomes a new combination of its own (later includes never merge into it).

Values may be scalars, lists or mappings and are compared deeply and type-strictly
(``16`` equals ``16.0`` but neither ``"16"`` nor ``true``). The matrix must already be
evaluated: a ``${{ }}`` string is not expanded here.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vmrunner.errors import UserInputError

from .expressions import to_string

MAX_JOBS = 256
"""GitHub's limit on the jobs one matrix may generate."""

MAX_RAW_COMBINATIONS = 1_000_000
"""Cartesian products larger than this are refused before ``exclude`` is applied (GitHub
documents no such limit; it keeps a hostile matrix from exhausting memory or time)."""

_RESERVED = ("include", "exclude")


class MatrixError(UserInputError):
    """A ``strategy.matrix`` that cannot be expanded."""


def expand_matrix(strategy_matrix: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every job configuration of the matrix, in GitHub's order.

    ``None`` (no matrix) gives one empty configuration. Raises :class:`MatrixError` for an
    empty matrix, an empty or non-list vector, a malformed include/exclude, an exclude key
    that is not a vector, or more than :data:`MAX_JOBS` configurations. When ``exclude``
    removes every combination only the includes remain (possibly none: ``[]``; GitHub's
    behaviour for that case is the caller's to decide). The dicts are fresh deep copies.
    """
    if strategy_matrix is None:
        return [{}]
    if not isinstance(strategy_matrix, Mapping):
        raise MatrixError(
            f"strategy.matrix must be a mapping, not {type(strategy_matrix).__name__}"
        )
    vectors = _vectors(strategy_matrix)
    include = _entries(strategy_matrix, "include")
    exclude = _entries(strategy_matrix, "exclude")
    if not vectors and not include:
        raise MatrixError("Matrix must define at least one vector")
    _check_exclude_keys(exclude, vectors)
    originals = list(_filtered_product(vectors, exclude)) if vectors else []
    jobs = _apply_include(originals, include)
    if len(jobs) > MAX_JOBS:
        raise MatrixError(_too_many(len(jobs)))
    return [copy.deepcopy(job) for job in jobs]


def _vectors(matrix: Mapping[str, Any]) -> dict[str, list[Any]]:
    vectors: dict[str, list[Any]] = {}
    for key, values in matrix.items():
        if key in _RESERVED:
            continue
        if not isinstance(values, Sequence) or isinstance(values, str | bytes):
            raise MatrixError(f"Matrix vector '{key}' must be a list of values")
        if not values:
            raise MatrixError(f"Matrix vector '{key}' does not contain any values")
        vectors[str(key)] = list(values)
    return vectors


def _entries(matrix: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    raw = matrix.get(key)
    if raw is None:
        return []
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        raise MatrixError(f"Matrix '{key}' must be a list of mappings")
    for entry in raw:
        if not isinstance(entry, Mapping):
            raise MatrixError(f"Matrix '{key}' entries must be mappings, not {entry!r}")
    return list(raw)


def _check_exclude_keys(exclude: list[Mapping[str, Any]], vectors: Mapping[str, Any]) -> None:
    for entry in exclude:
        for key in entry:
            if key not in vectors:
                raise MatrixError(
                    f"Matrix exclude key '{key}' does not match any key within the matrix"
                )


def _filtered_product(
    vectors: Mapping[str, list[Any]], exclude: list[Mapping[str, Any]]
) -> Iterator[dict[str, Any]]:
    """The cartesian product minus excluded combinations; raises once more than
    :data:`MAX_JOBS` survive (includes can only add more)."""
    raw = math.prod(len(values) for values in vectors.values())
    if raw > MAX_RAW_COMBINATIONS or (raw > MAX_JOBS and not exclude):
        raise MatrixError(_too_many(raw))
    kept = 0
    for values in itertools.product(*vectors.values()):
        combination = dict(zip(vectors, values, strict=True))
        if any(_fits(entry, combination) for entry in exclude):
            continue
        kept += 1
        if kept > MAX_JOBS:
            raise MatrixError(_too_many(kept, at_least=True))
        yield combination


def _apply_include(
    originals: list[dict[str, Any]], include: list[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    jobs = [dict(original) for original in originals]
    extra: list[dict[str, Any]] = []
    for entry in include:
        matched = False
        for original, job in zip(originals, jobs, strict=True):
            if _fits(entry, original):
                job.update((key, value) for key, value in entry.items() if key not in original)
                matched = True
        if not matched:
            extra.append(dict(entry))
    return jobs + extra


def _fits(entry: Mapping[str, Any], combination: Mapping[str, Any]) -> bool:
    """Whether every key of ``entry`` that ``combination`` has carries an equal value."""
    return all(
        key not in combination or same_value(combination[key], v) for key, v in entry.items()
    )


def same_value(a: Any, b: Any) -> bool:
    """Deep, type-strict equality of YAML values: booleans equal only booleans, numbers
    compare by value, mappings by keys and values, sequences element-wise."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if _is_list(a) and _is_list(b):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _too_many(count: int, *, at_least: bool = False) -> str:
    amount = f"more than {count - 1}" if at_least else str(count)
    return f"The matrix would generate {amount} jobs; GitHub allows at most {MAX_JOBS} per matrix"


@dataclass(frozen=True, slots=True)
class StrategyContext:
    """The ``strategy`` context of one matrix job."""

    job_index: int
    job_total: int
    fail_fast: bool
    max_parallel: int

    def to_context(self) -> dict[str, Any]:
        """The context as the expression evaluator reads it (GitHub's key names)."""
        return {
            "fail-fast": self.fail_fast,
            "job-index": self.job_index,
            "job-total": self.job_total,
            "max-parallel": self.max_parallel,
        }


def strategy_context(
    index: int, total: int, fail_fast: bool = True, max_parallel: int | None = None
) -> StrategyContext:
    """The ``strategy`` context of job ``index`` (0-based) of ``total``.

    ``fail_fast`` defaults to true and ``max_parallel`` to ``total``, as on GitHub. Raises
    ValueError for an index outside ``range(total)`` or a ``max_parallel`` below 1 (a
    caller bug, not user input: validate ``max-parallel`` before calling).
    """
    if not 0 <= index < total:
        raise ValueError(f"job index {index} is outside 0..{total - 1}")
    if max_parallel is not None and max_parallel < 1:
        raise ValueError(f"max_parallel must be at least 1, not {max_parallel}")
    return StrategyContext(index, total, fail_fast, total if max_parallel is None else max_parallel)


def job_display_name(name: str, matrix_values: Mapping[str, Any]) -> str:
    """GitHub's default name of a matrix job: ``build (ubuntu, 18)``.

    Values appear in the combination's key order, converted as expressions convert them to
    strings (``true``, ``3.1``); lists and mappings contribute their leaves in order. An
    empty combination gives ``name`` unchanged. Does not look at whether ``name`` is a
    template that already mentions the matrix: the caller uses the evaluated name then.
    """
    parts = [to_string(leaf) for value in matrix_values.values() for leaf in _leaves(value)]
    return f"{name} ({', '.join(parts)})" if parts else name


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif _is_list(value):
        for item in value:
            yield from _leaves(item)
    else:
        yield value
