"""Candidate fixes: diffs of a failing and a passing run of the same job."""

from __future__ import annotations

import pytest

from vmrunner.learning.lessons import (
    Change,
    JobRunSnapshot,
    StepRecord,
    confidence,
    env_changes,
    extract_fix,
)


def run(run_id: str, steps: list[tuple[str, bool]], env: dict[str, str] | None = None,
        commit: str = "c1", names: list[str] | None = None) -> JobRunSnapshot:  # fmt: skip
    names = names or [""] * len(steps)
    records = tuple(StepRecord(i, names[i], cmd, ok) for i, (cmd, ok) in enumerate(steps))
    return JobRunSnapshot(run_id, "test", commit, records, env or {})


def kinds(fix: object) -> list[tuple[str, str | None, str | None]]:
    assert fix is not None
    return [(c.kind, c.before, c.after) for c in fix.changes]  # type: ignore[attr-defined]


FIXES = [
    # a version pin before the failing step changed
    (
        run("f", [("git clone x", True), ("pip install foo==1.2", True), ("pytest", False)]),
        run("p", [("git clone x", True), ("pip install foo==1.3", True), ("pytest", True)]),
        [("changed", "pip install foo==1.2", "pip install foo==1.3")],
        0.7,
    ),
    # the failing step itself changed
    (
        run("f", [("make", True), ("pytest -x", False)]),
        run("p", [("make", True), ("pytest -x -p no:cacheprovider", True)]),
        [("changed", "pytest -x", "pytest -x -p no:cacheprovider")],
        1.0,
    ),
    # a step was added before the failing one; steps the failure skipped are no change
    (
        run("f", [("make", False)]),
        run("p", [("apt-get install -y libfoo", True), ("make", True), ("make check", True)]),
        [("added", None, "apt-get install -y libfoo")],
        0.7,
    ),
    # a step was removed
    (
        run("f", [("a", True), ("rm -rf ~/.cache", True), ("b", False)]),
        run("p", [("a", True), ("b", True)]),
        [("removed", "rm -rf ~/.cache", None)],
        0.5,
    ),
    # environment only
    (
        run("f", [("pytest", False)], env={"PY": "3.11", "OLD": "1"}),
        run("p", [("pytest", True)], env={"PY": "3.12", "NEW": "x"}),
        [("env_added", None, "NEW=x"), ("env_removed", "OLD=1", None),
         ("env_changed", "PY=3.11", "PY=3.12")],
        round(0.6 / 1.5, 2),
    ),
    # only the commit changed: a code change we cannot see
    (
        run("f", [("pytest", False)], commit="aaa"),
        run("p", [("pytest", True)], commit="bbb"),
        [("commit", "aaa", "bbb")],
        0.3,
    ),
    # temp paths are not changes
    (
        run("f", [("cd /tmp/a1 && make", True), ("pip install x==1", True), ("t", False)]),
        run("p", [("cd /tmp/b2 && make", True), ("pip install x==2", True), ("t", True)]),
        [("changed", "pip install x==1", "pip install x==2")],
        0.7,
    ),
]  # fmt: skip


@pytest.mark.parametrize(("failing", "passing", "expected", "conf"), FIXES)
def test_extract_fix(
    failing: JobRunSnapshot, passing: JobRunSnapshot, expected: list[object], conf: float
) -> None:
    fix = extract_fix(failing, passing)
    assert kinds(fix) == expected
    assert fix is not None
    assert fix.confidence == pytest.approx(conf)
    assert (fix.failing_run, fix.passing_run) == ("f", "p")


def test_steps_align_by_name() -> None:
    failing = run("f", [("a", True), ("t1", False)], names=["setup", "test"])
    passing = run("p", [("a", True), ("x", True), ("t1", True)], names=["setup", "lint", "test"])
    assert kinds(extract_fix(failing, passing)) == [("added", None, "x")]


def test_nothing_changed_means_no_fix() -> None:
    same = [("pip install foo==1", True), ("pytest", False)]
    passing = [("pip install foo==1", True), ("pytest", True)]
    assert extract_fix(run("f", same), run("p", passing)) is None


def test_many_changes_lower_the_confidence() -> None:
    one = [Change("changed", "a", "b", 0.7)]
    three = [*one, Change("added", None, "c", 0.7), Change("added", None, "d", 0.7)]
    assert confidence(three) < confidence(one)
    assert confidence([*one, Change("commit", "x", "y", 0.3)]) == pytest.approx(0.63)
    assert confidence([]) == 0.0


def test_env_changes_sorted_by_name() -> None:
    out = env_changes({"B": "1", "A": "1"}, {"A": "2", "C": "3"})
    assert [c.kind for c in out] == ["env_changed", "env_removed", "env_added"]
