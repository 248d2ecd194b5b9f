"""Comparing two attempts (pure): tables of documents, and properties."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from vmrunner.results.compare import COMPARISON_SCHEMA, checks, compare, units

PHASES = ("preflight", "build", "install", "boot", "runtime")


def systest(run_id: str, statuses: dict[str, str], errors: list[dict[str, Any]] = (),  # type: ignore[assignment]
            runtime_log: str = "", duration: float = 10.0) -> dict[str, Any]:  # fmt: skip
    return {
        "id": run_id, "kind": "systest", "duration_s": duration,
        "status": "success" if all(s == "passed" for s in statuses.values()) else "failure",
        "errors": list(errors),
        "phases": [{"name": p, "status": statuses.get(p, "skipped"), "duration_s": 2.0 if p in statuses else 0.0,
                    "log_tail": runtime_log if p == "runtime" else ""} for p in PHASES],
    }  # fmt: skip


ALL_PASSED = dict.fromkeys(PHASES, "passed")
RUNTIME_FAILED = {**ALL_PASSED, "runtime": "failed"}
BROKEN = {"kind": "service_failed", "phase": "runtime", "message": "broken.service failed",
          "unit": "broken.service"}  # fmt: skip
CHECK = {"kind": "check_failed", "phase": "runtime", "message": "check failed: unit_active fine",
         "check": "unit_active fine.service"}  # fmt: skip
FAILED_LOG = "failed units: broken.service\nFAIL unit_active fine.service\nok   port_open 22"
PASSED_LOG = "failed units: none\nok   unit_active fine.service\nok   port_open 22"


def test_a_fixed_unit_is_named_with_its_phase() -> None:
    before = systest("1", RUNTIME_FAILED, [BROKEN, CHECK], FAILED_LOG, duration=30.0)
    after = systest("2", ALL_PASSED, [], PASSED_LOG, duration=25.5)
    cmp = compare(before, after)
    assert cmp["phases"] == [{"name": "runtime", "before": "failed", "after": "passed"}]
    assert cmp["units"] == [{"name": "broken.service", "before": "failed", "after": "ok"}]
    assert cmp["checks"] == [
        {"name": "unit_active fine.service", "before": "failed", "after": "passed"}
    ]
    assert cmp["errors"] == {"appeared": [], "gone": ["check_failed (unit_active fine.service)",
                                                      "service_failed (broken.service)"]}  # fmt: skip
    assert cmp["durations"]["total"] == {
        "name": "total",
        "before_s": 30.0,
        "after_s": 25.5,
        "delta_s": -4.5,
    }
    assert (
        "runtime failed -> passed" in cmp["summary"]
        and "broken.service failed -> ok" in cmp["summary"]
    )
    assert list(Draft202012Validator(COMPARISON_SCHEMA).iter_errors(cmp)) == []


def test_a_new_failure_and_a_phase_that_did_not_run() -> None:
    before = systest("1", ALL_PASSED, [], PASSED_LOG)
    boot_timeout = {"kind": "boot_timeout", "phase": "boot", "message": "late",
                    "pending_units": ["slow.service"], "active_units": ["fine.service"]}  # fmt: skip
    after = systest("2", {"preflight": "passed", "build": "passed", "install": "passed", "boot": "timeout"},
                    [boot_timeout])  # fmt: skip
    cmp = compare(before, after)
    assert {"name": "boot", "before": "passed", "after": "timeout"} in cmp["phases"]
    assert {"name": "runtime", "before": "passed", "after": "skipped"} in cmp["phases"]
    assert cmp["errors"]["appeared"] == ["boot_timeout"] and cmp["errors"]["gone"] == []
    assert {"name": "slow.service", "before": "ok", "after": "pending"} in cmp["units"]
    # the runtime checks did not run: no check changed to something it was not seen as
    assert all(c["after"] is None for c in cmp["checks"])


def test_workflow_steps_are_compared_by_job_and_step() -> None:
    def wf(run_id: str, second: str) -> dict[str, Any]:
        steps = [{"name": "build", "conclusion": "success", "duration_s": 1.0},
                 {"name": "test", "conclusion": second, "duration_s": 3.0}]  # fmt: skip
        status = "success" if second == "success" else "failure"
        return {"id": run_id, "kind": "workflow", "status": status, "duration_s": 5.0, "errors": [],
                "jobs": [{"id": "ci", "name": "ci", "status": status, "steps": steps}]}  # fmt: skip

    cmp = compare(wf("1", "failure"), wf("2", "success"))
    assert cmp["steps"] == [{"name": "ci / test", "before": "failure", "after": "success"},
                            {"name": "ci", "before": "failure", "after": "success"}]  # fmt: skip
    assert cmp["phases"] == [] and cmp["units"] == []


def test_checks_and_units_are_read_from_the_runtime_log_and_errors() -> None:
    doc = systest("1", RUNTIME_FAILED, [BROKEN], FAILED_LOG)
    assert checks(doc) == {"unit_active fine.service": "failed", "port_open 22": "passed"}
    assert units(doc) == {"broken.service": "failed"}
    assert units(systest("2", {"preflight": "failed"})) == {}


STATUS = st.sampled_from(["passed", "failed", "skipped", "timeout"])
DOCS = st.builds(
    lambda rid, st_, errs, dur: systest(rid, dict(zip(PHASES, st_, strict=False)), errs, "", dur),
    st.text("0123456789", min_size=1, max_size=4), st.lists(STATUS, max_size=5),
    st.lists(st.sampled_from([BROKEN, CHECK]), max_size=2), st.floats(0, 1e4),
)  # fmt: skip


@given(DOCS, DOCS)
def test_comparison_is_valid_and_reverses(a: dict[str, Any], b: dict[str, Any]) -> None:
    ab, ba = compare(a, b), compare(b, a)
    assert list(Draft202012Validator(COMPARISON_SCHEMA).iter_errors(ab)) == []
    assert ab["errors"]["appeared"] == ba["errors"]["gone"]
    flip = lambda cs: sorted((c["name"], c["after"], c["before"]) for c in cs)  # noqa: E731
    assert flip(ab["phases"]) == sorted((c["name"], c["before"], c["after"]) for c in ba["phases"])
    assert compare(a, a)["phases"] == [] and compare(a, a)["errors"] == {"appeared": [], "gone": []}
