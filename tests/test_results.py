"""The result envelope: to_dict, its JSON Schema, and the text summary."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vmrunner.results import (
    RESULT_SCHEMA,
    Annotation,
    ErrorEntry,
    JobEntry,
    RunDocument,
    StepEntry,
    render_text,
    validate_result,
)


def _workflow_doc() -> RunDocument:
    step = StepEntry("s1", "Run make", "failure", "success", 2, 1.5, "boom", False, {"k": "v"},
                     (Annotation("error", "bad", "a.c", 3),))  # fmt: skip
    jobs = (
        JobEntry("build", "build (a, 1)", "failure", "ci.yml", {"os": "a", "n": 1}, {}, (step,)),
        JobEntry("test", "test", "skipped"),
    )
    errors = (ErrorEntry("annotation", "bad", "build", "Run make", "a.c", 3),)
    return RunDocument("123", "workflow", "failure", 1000.0, 1012.5, "tcg", errors, jobs)


def test_a_workflow_document_validates() -> None:
    doc = _workflow_doc().to_dict()
    assert validate_result(doc) == []
    assert doc["duration_s"] == 12.5
    assert doc["started_at"] == "1970-01-01T00:16:40.000Z"
    assert doc["jobs"][0]["matrix"] == {"os": "a", "n": 1}
    json.dumps(doc)


def test_a_systest_document_validates_and_has_phases_not_jobs() -> None:
    from vmrunner.systest.result import SystestResult

    doc = SystestResult("s1", "recipe.yml", "debian", 0.0, 1.0, "tcg", "success").to_dict()
    for phase in doc["phases"]:
        phase["status"] = "passed"
    assert validate_result(doc) == []
    assert "jobs" not in doc
    doc["jobs"] = []
    assert validate_result(doc) != []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("status",), "weird"),
        (("kind",), "other"),
        (("jobs", 0, "status"), "timeout"),
        (("jobs", 0, "steps", 0, "exit_code"), "1"),
        (("started_at",), "yesterday"),
        (("schema_version",), 1),
    ],
)
def test_the_schema_rejects_what_is_wrong(path: tuple[object, ...], value: object) -> None:
    doc = _workflow_doc().to_dict()
    target = doc
    for key in path[:-1]:
        target = target[key]  # type: ignore[index]
    target[path[-1]] = value  # type: ignore[index]
    assert validate_result(doc)


def test_missing_required_fields_and_wrong_container_are_rejected() -> None:
    doc = _workflow_doc().to_dict()
    del doc["errors"]
    assert any("errors" in p for p in validate_result(doc))
    doc = _workflow_doc().to_dict()
    doc["phases"] = []
    assert validate_result(doc)


def test_render_text_is_a_summary_table() -> None:
    text = render_text(_workflow_doc().to_dict())
    lines = text.splitlines()
    assert lines[0].split() == ["JOB", "STATUS", "TIME", "FAILED", "STEP"]
    assert "build (a, 1)  failure" in text
    assert "Run make" in lines[1]
    assert "annotation: a.c:3 build/Run make: bad" in text
    assert lines[-1] == "run 123: failure in 12.5s (accel tcg)"


def test_schema_command_prints_the_schema() -> None:
    proc = subprocess.run([sys.executable, "-m", "vmrunner", "schema", "result"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == json.loads(json.dumps(RESULT_SCHEMA))
