"""LearningService end to end on a small history, on every backend."""

from __future__ import annotations

import json

from vmrunner.learning.service import LearningService

from .builders import obs


def _job(
    svc: LearningService,
    run: str,
    minute: float,
    steps: list[tuple[str, int, str]],
    repo: str = "acme/app",
    commit: str = "c1",
    env: dict[str, str] | None = None,
) -> None:
    prev = None
    records = []
    for i, (cmd, code, out) in enumerate(steps):
        records.append(
            obs(
                cmd,
                exit_code=code,
                output=out,
                run_id=run,
                job="test",
                step=i,
                step_name=f"s{i}",
                repo=repo,
                workflow="ci",
                commit=commit,
                prev_command=prev,
                minute=minute + i,
                env=env or {},
            )
        )
        prev = cmd
    svc.record(records)  # fmt: skip


def test_empty_store_answers_everything(service: LearningService) -> None:
    p = service.predict("make")
    assert (p.level, p.observations, p.probability) == ("prior", 0, 0.5)
    assert service.related("make").before == ()
    assert service.lessons().lessons == ()
    assert service.explain("nope").found is False
    assert service.stats().totals.observations == 0
    assert service.graph().number_of_nodes() == 0


def test_queries_on_a_small_history(service: LearningService) -> None:
    for r in range(8):
        fail = r % 2 == 1
        out = f"E   ModuleNotFoundError: No module named 'm{r}'" if fail else ""
        _job(service, f"run{r}", r * 10, [("git clone x", 0, ""), ("make -j4", 0, ""),
                                          ("pytest -x", int(fail), out)], commit=f"c{r // 4}")  # fmt: skip
    related = service.related("pytest -x")
    assert [(n.command, n.count, n.success_rate) for n in related.before] == [
        ("make -j<n>", 8, 0.5)
    ]
    assert related.usual_sequence == ("git clone x", "make -j<n>", "pytest -x")
    assert related.failed_with[0].template == "E ModuleNotFoundError: No module named <*>"
    assert related.failed_with[0].count == 4
    assert [n.command for n in service.related("make -j2").after] == ["pytest -x"]

    p = service.predict("pytest -x", repo="acme/app", after="make -j16")
    assert p.level == "repo+after"
    assert (p.observations, p.interval[0] < p.probability < p.interval[1]) == (8, True)
    assert 0.4 < p.probability < 0.6

    stats = service.stats()
    assert stats.totals.observations == 24
    assert stats.totals.runs == 8
    assert stats.failing_commands[0].command == "pytest -x"
    assert stats.jobs[0].name == "acme/app/ci/test"
    assert stats.jobs[0].success_rate == 0.5
    assert [f.command for f in stats.flaky_commands] == ["pytest -x"]

    graph = service.graph()
    assert graph.has_edge("cmd:make -j<n>", "cmd:pytest -x")
    assert graph.edges["cmd:make -j<n>", "cmd:pytest -x"]["fail"] == 4

    for result in (p, related, stats, service.lessons(), service.explain("run7")):
        json.dumps(result.to_dict())


def test_co_failures(service: LearningService) -> None:
    for r in range(3):
        _job(service, f"run{r}", r * 10, [("lint", 1, "error: style"), ("pytest", 1, "error: x")])
    co = service.related("pytest").co_failures
    assert [(n.command, n.count) for n in co] == [("lint", 3)]


def test_record_summary(service: LearningService) -> None:
    s = service.record([obs("a", exit_code=1, output="boom failed"), obs("b")])
    assert (s.recorded, s.failures, s.new_signatures) == (2, 1, 1)
    again = service.record([obs("a", exit_code=1, output="boom failed", run_id="run-2")])
    assert again.new_signatures == 0
    assert service.record([]).recorded == 0
