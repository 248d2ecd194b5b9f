"""The report builders (pure): statuses and check runs from queue facts and result
documents, checked against tables of cases and GitHub's own request schemas."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmrunner.github import summary as md
from vmrunner.github.reports import (
    MAX_DESCRIPTION,
    ItemFacts,
    JobRef,
    Report,
    ReportBuilder,
    cut_key,
    outcomes,
)
from vmrunner.results.envelope import ErrorEntry
from vmrunner.results.workflow import Annotation, JobEntry, RunDocument, StepEntry

from .openapi import spec

FACTS = ItemFacts("octo/hello", "a" * 40, ".github/workflows/ci.yml", "CI", 17)
TOKEN = ReportBuilder("token", "https://ci.example.org/")
APP = ReportBuilder("app", "https://ci.example.org")


def step(name: str, conclusion: str = "success", code: int | None = 0, **kw: Any) -> StepEntry:
    return StepEntry(name.lower(), name, conclusion, conclusion, code, **kw)  # type: ignore[arg-type]


def job(job_id: str, status: str, *steps: StepEntry, name: str = "", **kw: Any) -> JobEntry:
    return JobEntry(job_id, name or job_id, status, steps=steps, duration_s=3.2, **kw)  # type: ignore[arg-type]


def document(*jobs: JobEntry, status: str = "success", errors: tuple[ErrorEntry, ...] = (),
             learning: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    doc = RunDocument("17", "workflow", status, 1000.0, 1010.0, errors=errors, jobs=jobs,  # type: ignore[arg-type]
                      learning=learning)  # fmt: skip
    return doc.to_dict()


FAIL = step("Run tests", "failure", 2, log_tail="collected 3\nFAILED test_x\n")
TIMEOUT = step("Slow", "failure", None, timed_out=True)

# name, document, expected jobs: (job id, status state, check conclusion, description part)
CASES: list[tuple[str, dict[str, Any], list[tuple[str, str, str, str]]]] = [
    ("all pass", document(job("build", "success", step("Make"))),
     [("build", "success", "success", "passed in 3s")]),
    ("one matrix instance fails",
     document(job("test", "success", step("Run tests"), name="test (3.11)"),
              job("test", "failure", step("Setup"), FAIL, name="test (3.12)"), status="failure"),
     [("test", "failure", "failure", "test (3.12): step 'Run tests' failed (exit status 2)")]),
    ("a step timed out", document(job("slow", "failure", TIMEOUT), status="failure"),
     [("slow", "failure", "timed_out", "step 'Slow' timed out")]),
    ("cancelled", document(job("a", "cancelled"), status="cancelled"),
     [("a", "error", "cancelled", "cancelled")]),
    ("skipped for want of an image",
     document(job("arm", "skipped", reason="no image for runs-on 'arm64'")),
     [("arm", "success", "neutral", "skipped: no image for runs-on 'arm64'")]),
    ("skipped by if", document(job("deploy", "skipped")), [("deploy", "success", "skipped", "skipped")]),
    ("harness failure of a job",
     document(job("vm", "failure"), status="error",
              errors=(ErrorEntry("harness", "qemu did not start", job="vm"),)),
     [("vm", "error", "failure", "vm: qemu did not start")]),
    ("reusable workflow jobs under their caller",
     document(job("call/inner", "success", step("x")), job("call/other", "failure", FAIL),
              status="failure"),
     [("call", "failure", "failure", "step 'Run tests' failed")]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "doc", "expected"), CASES, ids=[c[0] for c in CASES])
def test_outcomes(
    name: str, doc: dict[str, Any], expected: list[tuple[str, str, str, str]]
) -> None:
    got = outcomes(doc)
    assert [(o.job_id, o.state, o.conclusion) for o in got] == [e[:3] for e in expected]
    for outcome, (*_, part) in zip(got, expected, strict=True):
        assert part in outcome.description
        assert len(outcome.description) <= MAX_DESCRIPTION


def test_jobs_missing_from_the_document_are_reported_not_run() -> None:
    doc = document(job("build", "success"), status="error",
                   errors=(ErrorEntry("harness", "worker_lost: lease expired"),))  # fmt: skip
    got = {o.job_id: o for o in outcomes(doc, [JobRef("build"), JobRef("test")])}
    assert got["build"].state == "success"
    assert (got["test"].state, got["test"].conclusion) == ("error", "failure")
    assert got["test"].description == "not run: worker_lost: lease expired"
    cancelled = outcomes(document(status="cancelled"), [JobRef("x")])[0]
    assert (cancelled.state, cancelled.conclusion) == ("error", "cancelled")


def _validate(report: Report, *, update: bool = False) -> list[str]:
    """What GitHub's schema says of the request the sender makes for ``report``."""
    s = spec()
    if report.kind == "status":
        op = s.operation("/repos/{owner}/{repo}/statuses/{sha}", "post")
        body = report.body
    elif update:
        op = s.operation("/repos/{owner}/{repo}/check-runs/{check_run_id}", "patch")
        body = {k: v for k, v in report.body.items() if k != "head_sha"}
    else:
        op = s.operation("/repos/{owner}/{repo}/check-runs", "post")
        body = report.body
    return s.errors(s.body_schema(op)[1], body)


@pytest.mark.parametrize(("name", "doc", "expected"), CASES, ids=[c[0] for c in CASES])
def test_final_statuses(
    name: str, doc: dict[str, Any], expected: list[tuple[str, str, str, str]]
) -> None:
    reports = TOKEN.finished(FACTS, doc)
    assert [(r.kind, r.body["context"], r.body["state"]) for r in reports] == [
        ("status", f"vmrunner/CI/{job_id}", state) for job_id, state, _, _ in expected
    ]
    for report in reports:
        assert report.body["target_url"] == "https://ci.example.org/runs/17"
        assert report.key == f"status:octo/hello@{'a' * 40}:{report.body['context']}"
        assert _validate(report) == []


@pytest.mark.parametrize(("name", "doc", "expected"), CASES, ids=[c[0] for c in CASES])
def test_final_check_runs(
    name: str, doc: dict[str, Any], expected: list[tuple[str, str, str, str]]
) -> None:
    reports = APP.finished(FACTS, doc)
    assert [(r.body["name"], r.body["external_id"], r.body["conclusion"]) for r in reports] == [
        (f"CI / {j}", f".github/workflows/ci.yml#{j}", c) for j, _, c, _ in expected
    ]
    for report in reports:
        assert report.body["status"] == "completed"
        assert report.body["details_url"] == "https://ci.example.org/runs/17"
        assert _validate(report) == [] and _validate(report, update=True) == []


def test_one_key_per_job_across_the_life_of_a_run() -> None:
    """queued, started and finished reports of a job share a key (so they go out in
    order), and other jobs, runs and commits do not."""
    jobs = [JobRef("build"), JobRef("test")]
    doc = document(job("build", "success"), job("test", "failure", FAIL), status="failure")
    for builder in (TOKEN, APP):
        life = [builder.queued(FACTS, jobs), builder.started(FACTS, jobs, "2024-01-01T00:00:00Z"),
                builder.finished(FACTS, doc)]  # fmt: skip
        keys = [[r.key for r in reports] for reports in life]
        assert keys[0] == keys[1] == keys[2] and len(set(keys[0])) == 2
        for reports in life:
            assert all(_validate(r) == [] for r in reports)
    other_run = ItemFacts(FACTS.repo, FACTS.sha, FACTS.workflow, "CI", 18)
    assert APP.queued(other_run, jobs)[0].key != APP.queued(FACTS, jobs)[0].key
    assert TOKEN.queued(other_run, jobs)[0].key == TOKEN.queued(FACTS, jobs)[0].key  # one context


def test_queued_and_started_bodies() -> None:
    jobs = [JobRef("build", "Build it")]
    assert TOKEN.queued(FACTS, jobs)[0].body == {
        "state": "pending", "context": "vmrunner/CI/build", "description": "queued",
        "target_url": "https://ci.example.org/runs/17"}  # fmt: skip
    started = APP.started(FACTS, jobs, "2024-05-01T10:00:00Z", host="h1")[0].body
    assert (started["status"], started["started_at"]) == ("in_progress", "2024-05-01T10:00:00Z")
    assert TOKEN.started(FACTS, jobs, "x", host="h1")[0].body["description"] == "running on h1"
    no_url = ReportBuilder("token").queued(ItemFacts("o/r", "b" * 40, "w.yml"), jobs)[0].body
    assert "target_url" not in no_url and no_url["context"] == "vmrunner/w.yml/build"


def test_annotations_go_fifty_per_report_on_one_key() -> None:
    notes = tuple(Annotation("error", f"bad {i}", file="src/a.py", line=i + 1) for i in range(120))
    unplaced = Annotation("warning", "no file")
    doc = document(job("lint", "failure", step("ruff", "failure", 1, annotations=(*notes, unplaced))),
                   status="failure")  # fmt: skip
    reports = APP.finished(FACTS, doc)
    assert [len(r.body["output"]["annotations"]) for r in reports] == [50, 50, 20]
    assert len({r.key for r in reports}) == 1
    assert reports[0].body["conclusion"] == "failure" and "conclusion" not in reports[1].body
    first = reports[0].body["output"]["annotations"][0]
    assert first == {"path": "src/a.py", "start_line": 1, "end_line": 1,
                     "annotation_level": "failure", "message": "bad 0"}  # fmt: skip
    assert all(_validate(r) == [] and _validate(r, update=True) == [] for r in reports)


def test_summary_has_the_table_the_failed_step_its_log_and_the_learning_hint() -> None:
    log = "".join(f"line {i}\n" for i in range(100)) + "```\nend\n"
    learning = {"run_id": "17", "found": True, "failed_steps": [
        {"job": "test", "step": 2, "step_name": "Run tests", "occurrences": 4,
         "occurrences_before": 3, "flaky": False, "lesson": {"fix": {
             "failing_run": "9", "passing_run": "10", "changes": [
                 {"kind": "changed", "before": "pip install x", "after": "pip install x==1"}]}}}]}  # fmt: skip
    failing = step("Run tests", "failure", 2, log_tail=log, command="pytest -x")
    doc = document(job("test", "failure", step("Setup"), failing, name="test (3.12)"),
                   status="failure", learning=learning)  # fmt: skip
    text = APP.finished(FACTS, doc)[0].body["output"]["summary"]
    assert "| test (3.12) | ❌ failure | Run tests | 3.2 s |" in text
    assert "step 'Run tests' failed (exit status 2)" in text
    assert "line 62\n" in text and "line 99\n" in text and "line 61\n" not in text  # last 40
    assert "````text\n" in text  # the log's own ``` cannot close the fence
    assert (
        "seen 4 times; last fixed by run 10 (after run 9): changed: pip install x -> pip install x==1"
        in text
    )
    assert md.learning_hint(learning, "test", 1) is None


def test_workflow_that_cannot_load() -> None:
    facts = ItemFacts("octo/hello", "c" * 40, ".github/workflows/bad.yml", "")
    status = TOKEN.errors(facts, "mapping values are not allowed here", line=7)
    assert len(status) == 1 and status[0].body["state"] == "error"
    assert status[0].body["context"] == "vmrunner/bad.yml"
    assert (
        status[0].body["description"]
        == ".github/workflows/bad.yml line 7: mapping values are not allowed here"
    )
    assert "target_url" not in status[0].body  # no run was made
    check = APP.errors(facts, "mapping values are not allowed here", line=7, col=3)[0].body
    assert (check["conclusion"], check["name"], check["external_id"]) == (
        "failure",
        "bad.yml",
        ".github/workflows/bad.yml#",
    )
    assert check["output"]["annotations"][0]["start_line"] == 7
    assert _validate(status[0]) == [] and _validate(APP.errors(facts, "x", line=7)[0]) == []


def test_cancelled() -> None:
    jobs = [JobRef("a"), JobRef("b")]
    assert {r.body["state"] for r in TOKEN.cancelled(FACTS, jobs, "superseded by run 18")} == {
        "error"
    }
    checks = APP.cancelled(FACTS, jobs, "superseded by run 18")
    assert [c.body["conclusion"] for c in checks] == ["cancelled", "cancelled"]
    assert all(_validate(c) == [] for c in checks)


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown reporting mode"):
        ReportBuilder("checks")  # type: ignore[arg-type]


# --- properties ---------------------------------------------------------------------------


@given(st.text(), st.integers(min_value=1, max_value=70000))
def test_cut_fits_and_keeps_the_head(text: str, limit: int) -> None:
    out = md.cut(text, limit)
    assert len(out) <= limit
    if len(text) <= limit:
        assert out == text
    else:
        head = out.removesuffix(md.CUT_MARK)
        assert text.startswith(head) and len(out) == limit


@settings(max_examples=30, deadline=None)
@given(st.text(min_size=1, max_size=200), st.integers(min_value=1, max_value=2000),
       st.text(max_size=300))  # fmt: skip
def test_the_summary_always_fits_github(chunk: str, times: int, name: str) -> None:
    log = chunk * times  # up to 400,000 characters
    doc = document(job("t", "failure", step(name or "s", "failure", 1, log_tail=log, command=log)),
                   status="failure", errors=(ErrorEntry("step", log, job="t"),))  # fmt: skip
    for report in APP.finished(FACTS, doc):
        assert len(report.body["output"]["summary"]) <= md.MAX_TEXT
        assert len(report.body["output"]["title"]) <= 255
    assert len(TOKEN.finished(FACTS, doc)[0].body["description"]) <= MAX_DESCRIPTION


@given(st.lists(st.integers(), max_size=400), st.integers(min_value=1, max_value=60))
def test_batches_partition_in_order(items: list[int], size: int) -> None:
    out = md.batches(items, size)
    assert [x for batch in out for x in batch] == items
    assert all(0 < len(b) <= size for b in out) or out == [[]]
    assert len(out) == max(1, -(-len(items) // size))


@given(st.text(min_size=1, max_size=2000))
def test_keys_fit_the_column_and_stay_distinct(tail: str) -> None:
    key = cut_key("status:o/r@sha:" + tail)
    assert len(key) <= 500
    assert cut_key("status:o/r@sha:" + tail + "x") != key
