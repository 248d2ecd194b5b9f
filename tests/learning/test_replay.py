"""Replays of synthetic histories with known answers.

A scripted history checks that a lesson appears at the third occurrence, its fix
is extracted, flakiness is detected and prediction backs off. A simulated history
checks calibration: fit on the past, predict the future, beat the base rate.
"""

from __future__ import annotations

import random
from itertools import islice
from pathlib import Path

import pytest

from vmrunner.learning import Observation
from vmrunner.learning.predict import brier
from vmrunner.learning.service import LearningService
from vmrunner.learning.simulate import simulate

from .builders import obs

STEPS = ["git clone https://x/app.git", "pip install foo=={pin}", "pytest -x tests"]
ERR = "Traceback (most recent call last):\nModuleNotFoundError: No module named '{mod}'"


def job_run(run: int, *, pin: str, fail: bool, commit: str, env: dict[str, str],
            mod: str = "bar", job: str = "test") -> list[Observation]:  # fmt: skip
    out, prev = [], None
    for i, template in enumerate(STEPS):
        cmd = template.format(pin=pin)
        failing = fail and i == 2
        out.append(obs(cmd, exit_code=1 if failing else 0, run_id=f"run{run}", job=job, step=i,
                       step_name=f"step{i}", repo="acme/app", workflow="ci", commit=commit,
                       prev_command=prev, minute=run * 10 + i, env=env,
                       output=ERR.format(mod=mod) if failing else ""))  # fmt: skip
        prev = cmd
    return out


@pytest.fixture
def svc(tmp_path: Path) -> LearningService:
    return LearningService.open(f"sqlite:///{tmp_path / 'replay.db'}")


def test_lesson_appears_at_the_third_occurrence_with_its_fix(svc: LearningService) -> None:
    env = {"PYTHON": "3.11"}
    svc.record(job_run(1, pin="1.0", fail=False, commit="a1", env=env))
    for n, mod in enumerate(["bar", "baz", "qux"], start=1):
        svc.record(job_run(1 + n, pin="1.0", fail=True, commit=f"b{n}", env=env, mod=mod))
        assert len(svc.lessons().lessons) == (1 if n >= 3 else 0), f"after occurrence {n}"
    lesson = svc.lessons().lessons[0]
    assert lesson.template == "ModuleNotFoundError: No module named <*>"
    assert (lesson.occurrences, lesson.jobs, lesson.repositories) == (
        3, ("acme/app/ci/test",), ("acme/app",))  # fmt: skip
    assert lesson.fix is None  # nothing has passed since

    svc.record(job_run(5, pin="1.1", fail=False, commit="b3", env={"PYTHON": "3.12"}))
    fix = svc.lessons().lessons[0].fix
    assert fix is not None
    assert (fix.failing_run, fix.passing_run) == ("run4", "run5")
    assert [(c.kind, c.before, c.after) for c in fix.changes] == [
        ("changed", "pip install foo==1.0", "pip install foo==1.1"),
        ("env_changed", "PYTHON=3.11", "PYTHON=3.12"),
    ]
    assert fix.confidence == pytest.approx(0.56)
    assert svc.lessons(min_occurrences=4).lessons == ()


def test_explain_reports_history_lesson_and_flakiness(svc: LearningService) -> None:
    env = {"PYTHON": "3.11"}
    for run in range(1, 4):
        svc.record(job_run(run, pin="1.0", fail=True, commit=f"c{run}", env=env))
    svc.record(job_run(4, pin="1.0", fail=False, commit="c3", env=env))  # same commit passes
    step = svc.explain("run3").failed_steps[0]
    assert (step.step, step.normalised, step.occurrences, step.occurrences_before) == (
        2, "pytest -x tests", 3, 2)  # fmt: skip
    assert step.lesson is not None
    assert step.flaky and (step.passes_on_commit, step.failures_on_commit) == (1, 1)
    assert step.seen_in[0].context == "acme/app/ci/test"
    first = svc.explain("run1").failed_steps[0]
    assert (first.occurrences_before, first.flaky) == (0, False)
    assert svc.explain("run4").found is True
    assert svc.explain("run4").failed_steps == ()
    assert [f.command for f in svc.stats().flaky_commands] == ["pytest -x tests"]


def test_prediction_backs_off_as_data_thins(svc: LearningService) -> None:
    for run in range(10):
        svc.record(job_run(run, pin="1.0", fail=run % 5 == 0, commit="c", env={}))
    svc.record(
        [
            obs("python3 -c 'import a'", run_id="x1", repo="other"),
            obs("python3 -c 'import b'", run_id="x2", repo="other", exit_code=1),
        ]
        * 3
    )
    cases = [
        ({"repo": "acme/app", "after": "pip install foo==2.0"}, "pytest -x tests", "repo+after"),
        ({"repo": "acme/app", "after": "make"}, "pytest -x tests", "repo"),
        ({"repo": "new/repo"}, "pytest -x tests", "global"),
        ({}, "python3 -c 'import zzz'", "family"),
        ({}, "never-seen-anything", "prior"),
    ]
    for kw, command, level in cases:
        p = svc.predict(command, **kw)
        assert p.level == level, (command, kw)
        assert 0.0 < p.probability < 1.0
    family = svc.predict("python3 -c 'import zzz'")
    assert (family.family, family.observations) == ("python3 -c", 6)


def test_calibrated_on_a_simulated_history(tmp_path: Path) -> None:
    svc = LearningService.open(f"sqlite:///{tmp_path / 'sim.db'}")
    history = simulate(20_000, seed=7)
    svc.record(islice(history, 16_000))
    baseline = svc.stats().totals.success_rate
    future = random.Random(1).sample(list(history), 1500)
    ours, base = [], []
    for o in future:
        p = svc.predict(o.command, repo=o.repo, after=o.prev_command).probability
        ours.append((p, o.ok))
        base.append((baseline, o.ok))
    assert brier(ours) < 0.95 * brier(base)
    mean_p = sum(p for p, _ in ours) / len(ours)
    mean_y = sum(y for _, y in ours) / len(ours)
    assert abs(mean_p - mean_y) < 0.03  # calibrated in the large
