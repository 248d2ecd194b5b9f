"""Lessons and candidate fixes: what changed between a failing and a passing run.

A failure signature seen at least ``min_occurrences`` times is a lesson. When a
later run of the same job passed, ``extract_fix`` diffs the last failing run and the
first passing run:

* **Steps.** Only the steps up to the failing step (and up to the aligned step of
  the passing run: same step name, else same normalised command, else same
  position) are compared, because the steps a failure skipped are not a change.
  Steps are compared by ``diff_key`` (versions and hashes kept: a changed pin is a
  fix) and aligned with ``difflib``: a replaced step is *changed*, the rest *added*
  or *removed*.
* **Environment.** Variables added, removed or given another value.
* **Commit.** A different commit is listed too; the code change itself is unseen.

The confidence (0 to 1) is the relevance of the most relevant change, divided by
``1 + 0.25 * (changes - 1)`` so that one focused change beats many:

===============================================  =========
change                                           relevance
===============================================  =========
the failing step itself changed or removed       1.0
an earlier step changed, or a step added         0.7
an environment variable added, removed, changed  0.6
an earlier step removed                          0.5
only the commit differs                          0.3
===============================================  =========

A commit change next to other changes multiplies the confidence by 0.9. With no
difference at all there is no fix (``None``): the failure then looks flaky.
Pure: works on plain snapshots, no database, no clock.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from vmrunner.learning.jsonable import JsonMixin
from vmrunner.learning.normalise import diff_key, normalise


@dataclass(frozen=True)
class StepRecord:
    """One step of a job run as recorded: position, name, raw command and outcome."""

    step: int
    name: str
    command: str
    ok: bool


@dataclass(frozen=True)
class JobRunSnapshot:
    """The steps, environment and commit of one run of one job."""

    run_id: str
    job: str
    commit: str
    steps: tuple[StepRecord, ...]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Change(JsonMixin):
    """One difference: ``kind`` is added, removed, changed, env_added, env_removed,
    env_changed or commit; ``before``/``after`` hold the old and new text."""

    kind: str
    before: str | None
    after: str | None
    relevance: float


@dataclass(frozen=True)
class CandidateFix(JsonMixin):
    """What changed from ``failing_run`` to ``passing_run`` of the same job."""

    failing_run: str
    passing_run: str
    job: str
    changes: tuple[Change, ...]
    confidence: float


def failing_index(steps: Sequence[StepRecord]) -> int:
    """Index of the first failed step (the last step if none failed)."""
    for i, s in enumerate(steps):
        if not s.ok:
            return i
    return len(steps) - 1


def align(failing_step: StepRecord, passing: Sequence[StepRecord], fallback: int) -> int:
    """Index in ``passing`` of the step matching ``failing_step`` (name, command, position)."""
    if failing_step.name:
        for i, s in enumerate(passing):
            if s.name == failing_step.name:
                return i
    target = normalise(failing_step.command)
    for i, s in enumerate(passing):
        if normalise(s.command) == target:
            return i
    return min(fallback, len(passing) - 1)


def _step_changes(a: list[str], b: list[str], f_idx: int) -> list[Change]:
    changes: list[Change] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        olds, news = a[i1:i2], b[j1:j2]
        paired = min(len(olds), len(news)) if op == "replace" else 0
        for k in range(paired):
            rel = 1.0 if i1 + k == f_idx else 0.7
            changes.append(Change("changed", olds[k], news[k], rel))
        for k, old in enumerate(olds[paired:], start=i1 + paired):
            changes.append(Change("removed", old, None, 1.0 if k == f_idx else 0.5))
        for new in news[paired:]:
            changes.append(Change("added", None, new, 0.7))
    return changes


def env_changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[Change]:
    """Environment variables added, removed or changed, sorted by name."""
    out: list[Change] = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        kind = "env_added" if old is None else "env_removed" if new is None else "env_changed"
        out.append(
            Change(
                kind,
                None if old is None else f"{key}={old}",
                None if new is None else f"{key}={new}",
                0.6,
            )
        )
    return out


def confidence(changes: Sequence[Change]) -> float:
    """The confidence of a fix made of ``changes`` (see the module docstring)."""
    if not changes:
        return 0.0
    other = [c for c in changes if c.kind != "commit"]
    if not other:
        return 0.3
    score = max(c.relevance for c in other) / (1.0 + 0.25 * (len(other) - 1))
    if len(other) < len(changes):
        score *= 0.9
    return round(score, 2)


def extract_fix(failing: JobRunSnapshot, passing: JobRunSnapshot) -> CandidateFix | None:
    """The candidate fix from ``failing`` to ``passing``, or ``None`` when nothing differs."""
    if not failing.steps or not passing.steps:
        return None
    f_idx = failing_index(failing.steps)
    p_idx = align(failing.steps[f_idx], passing.steps, f_idx)
    a = [diff_key(s.command) for s in failing.steps[: f_idx + 1]]
    b = [diff_key(s.command) for s in passing.steps[: p_idx + 1]]
    changes = _step_changes(a, b, f_idx)
    changes += env_changes(failing.env, passing.env)
    if failing.commit != passing.commit and failing.commit and passing.commit:
        changes.append(Change("commit", failing.commit, passing.commit, 0.3))
    if not changes:
        return None
    return CandidateFix(
        failing_run=failing.run_id,
        passing_run=passing.run_id,
        job=failing.job,
        changes=tuple(changes),
        confidence=confidence(changes),
    )
