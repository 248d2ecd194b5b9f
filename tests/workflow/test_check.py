"""The public checking API: diagnostics, files, reusable-workflow calls, robustness."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmrunner.errors import UserInputError
from vmrunner.workflow.check import (
    CheckOptions,
    Diagnostic,
    Severity,
    WorkflowError,
    WorkflowSource,
    check_file,
    check_text,
    load_workflow,
)

VALID = "on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n"


def test_diagnostic_format() -> None:
    d = Diagnostic("ci.yml", 3, 7, "Unexpected value 'x'")
    assert d.format() == "ci.yml:3:7: Unexpected value 'x'"
    assert d.severity is Severity.ERROR


def test_valid_text_has_no_diagnostics() -> None:
    assert check_text(VALID, "ci.yml") == []


def test_diagnostics_are_sorted_and_name_the_file() -> None:
    text = "on: push\njobs:\n  b:\n    needs: z\n    runs-on: x\n    steps: [{run: a, runn: b}]\n"
    found = check_text(text, "ci.yml")
    assert [d.format() for d in found] == [
        "ci.yml:3:3: The workflow must contain at least one job with no dependencies.",
        "ci.yml:4:12: Job 'b' depends on unknown job 'z'.",
        "ci.yml:6:22: Unexpected value 'runn' (did you mean 'run'?)",
    ]
    assert [d.code for d in found] == ["needs", "needs", "schema"]


def test_yaml_errors_become_diagnostics() -> None:
    found = check_text("on: push\non: push\n", "ci.yml")
    assert [(d.line, d.col, d.code) for d in found] == [(2, 1, "yaml")]


def test_file_size_limit() -> None:
    found = check_text(VALID, "ci.yml", options=CheckOptions(max_file_size=10))
    assert [d.message for d in found] == [
        "The maximum file size of 10 characters has been exceeded"
    ]


def test_load_workflow_returns_the_model_or_raises() -> None:
    workflow = load_workflow(VALID, "ci.yml")
    assert [j.id for j in workflow.jobs] == ["build"]
    with pytest.raises(WorkflowError) as info:
        load_workflow("on: push\n", "ci.yml")
    assert isinstance(info.value, UserInputError)
    assert str(info.value) == "ci.yml:1:1: Required property is missing: jobs"


# ---- reusable workflows ------------------------------------------------------------

CALLEE = """\
on:
  workflow_call:
    inputs:
      needed: {type: string, required: true}
      optional: {type: string}
    secrets:
      token: {required: true}
jobs:
  inner:
    name: Inner
    permissions:
      contents: write
    runs-on: x
    steps: [{run: a}]
"""


def caller(extra: str = "", perms: str = "") -> str:
    return f"on: push\n{perms}jobs:\n  call:\n    uses: o/r/.github/workflows/c.yml@v1\n{extra}"


def check_with(text: str, files: dict[str, str | None], **options: object) -> list[str]:
    def resolve(ref: str) -> WorkflowSource | None:
        return WorkflowSource(ref, files[ref]) if ref in files else None

    opts = CheckOptions(**options)  # type: ignore[arg-type]
    return [d.format() for d in check_text(text, "ci.yml", options=opts, resolver=resolve)]


REF = "o/r/.github/workflows/c.yml@v1"
GOOD_CALL = "    with:\n      needed: x\n    secrets:\n      token: ${{ secrets.T }}\n"


@pytest.mark.parametrize(
    ("extra", "perms", "expected"),
    [
        (GOOD_CALL, "", []),
        ("    with:\n      needed: x\n    secrets: inherit\n", "", []),
        (
            "    secrets: inherit\n",
            "",
            ["ci.yml:4:11: Input needed is required, but not provided while calling."],
        ),
        (
            GOOD_CALL + "      extra: ${{ secrets.E }}\n",
            "",
            ["ci.yml:9:14: Invalid secret, extra is not defined in the referenced workflow."],
        ),
        (
            "    with:\n      needed: x\n      nope: y\n",
            "",
            [
                "ci.yml:4:11: Secret token is required, but not provided while calling.",
                "ci.yml:7:13: Invalid input, nope is not defined in the referenced workflow.",
            ],
        ),
        (
            GOOD_CALL,
            "permissions:\n  contents: read\n",
            [
                f"ci.yml:5:3: Error calling workflow '{REF}'. The nested job 'Inner' is "
                "requesting 'contents: write', but is only allowed 'contents: read'."
            ],
        ),
        (GOOD_CALL, "permissions: write-all\n", []),
        (
            GOOD_CALL,
            "permissions:\n  contents: banana\n",
            [
                "ci.yml:3:13: Unexpected value 'banana'",
                f"ci.yml:5:3: Error calling workflow '{REF}'. The nested job 'Inner' is "
                "requesting 'contents: write', but is only allowed 'contents: none'.",
            ],
        ),
    ],
)
def test_calls_are_checked_against_the_called_workflow(
    extra: str, perms: str, expected: list[str]
) -> None:
    assert sorted(check_with(caller(extra, perms), {REF: CALLEE})) == sorted(expected)


def test_default_permissions_policy() -> None:
    text = caller(GOOD_CALL)
    assert check_with(text, {REF: CALLEE}) == []  # permissive by default
    limited = check_with(text, {REF: CALLEE}, permissions_policy="limited-read")
    assert limited == [
        f"ci.yml:3:3: Error calling workflow '{REF}'. The nested job 'Inner' is requesting "
        "'contents: write', but is only allowed 'contents: read'."
    ]


def test_unresolved_references_are_not_checked() -> None:
    assert check_with(caller(), {}) == []


def test_missing_called_workflow_is_an_error() -> None:
    assert check_with(caller(), {REF: None}) == [
        f"ci.yml:4:11: Called workflow '{REF}' was not found"
    ]


def test_called_workflow_needs_workflow_call() -> None:
    assert check_with(caller(), {REF: VALID}) == [
        f"ci.yml:4:11: The workflow '{REF}' cannot be called: it has no 'workflow_call' trigger"
    ]


def test_problems_of_the_called_workflow_are_reported_in_its_file() -> None:
    broken = "on: workflow_call\njobs:\n  j:\n    runs-on: x\n    steps: [{runn: a}]\n"
    found = check_with(caller(), {REF: broken})
    assert f"{REF}:5:14: Unexpected value 'runn' (did you mean 'run'?)" in found


def test_call_cycles_stop() -> None:
    loop = "on: workflow_call\njobs:\n  again:\n    uses: o/r/.github/workflows/c.yml@v1\n"
    found = check_with(caller(), {REF: loop})
    assert any("calls itself" in f for f in found)


# ---- files -------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_check_file_resolves_local_workflows(tmp_path: Path) -> None:
    flows = tmp_path / ".github" / "workflows"
    write(
        flows / "reuse.yml",
        "on:\n  workflow_call:\n    inputs:\n      x: {type: string, required: true}\n" + VALID[9:],
    )
    ci = write(
        flows / "ci.yml",
        "on: push\njobs:\n  a:\n    uses: ./.github/workflows/reuse.yml\n"
        "  b:\n    uses: $/.github/workflows/reuse.yml\n    with: {x: 1}\n"
        "  c:\n    uses: ./.github/workflows/gone.yml\n"
        "  d:\n    runs-on: x\n    steps:\n      - uses: ./.github/actions/local\n",
    )
    assert [d.format() for d in check_file(ci)] == [
        f"{ci}:4:11: Input x is required, but not provided while calling.",
        f"{ci}:9:11: Called workflow './.github/workflows/gone.yml' was not found",
    ]


def test_check_file_outside_a_workflows_directory_resolves_nothing(tmp_path: Path) -> None:
    ci = write(
        tmp_path / "ci.yml", "on: push\njobs:\n  a:\n    uses: ./.github/workflows/gone.yml\n"
    )
    assert check_file(ci) == []


def test_unreadable_file_is_a_diagnostic(tmp_path: Path) -> None:
    found = check_file(tmp_path / "missing.yml")
    assert len(found) == 1 and found[0].code == "io"
    bad = tmp_path / "bad.yml"
    bad.write_bytes(b"on: \xff\n")
    assert check_file(bad)[0].code == "io"


# ---- robustness --------------------------------------------------------------------

YAMLISH = st.lists(
    st.sampled_from(
        [*"abon:-[]{}&*!|>'\"#%@`, \n\t?~0123456789.$\\", "${{", "}}", "  ", "\n  ", "!!int ",
         "!!str ", "&a ", "*a", "<<: ", "---\n", "jobs:\n", "on: push\n", "- ", "uses: ",
         "runs-on: ", "steps:\n", "needs: ", "\x00", "\ufeff", "\x85", "\u2028"]
    ),
    max_size=60,
).map("".join)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(st.text(), YAMLISH))
def test_arbitrary_text_never_crashes_check_text(text: str) -> None:
    found = check_text(text, "f.yml")
    assert all(isinstance(d, Diagnostic) and d.line >= 1 and d.col >= 1 for d in found)


FRAGMENTS = st.sampled_from(
    ["permissions:", " read", " write", " banana", " write-all", "{}", "contents:", "uses:",
     " o/r/.github/workflows/c.yml@v1", "with:", "secrets:", " inherit", "needed:", "token:",
     "jobs:", "on:", " push", "workflow_call", "inputs:", "type:", "required:", " true",
     "runs-on:", " x", "steps:", "- run: a", "\n", "\n  ", "\n    ", "\n      "]
)  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(FRAGMENTS, max_size=40).map("".join), st.lists(FRAGMENTS, max_size=40).map("".join))
def test_arbitrary_calls_never_crash(caller_text: str, callee_text: str) -> None:
    found = check_text(caller_text, "f.yml", resolver=lambda ref: WorkflowSource(ref, callee_text))
    assert all(isinstance(d, Diagnostic) for d in found)


def test_call_depth_limit() -> None:
    ref = "o/r/.github/workflows/w{}.yml@v1"
    chain = {
        ref.format(i): f"on: workflow_call\njobs:\n  j:\n    uses: {ref.format(i + 1)}\n"
        for i in range(5)
    }
    chain[ref.format(5)] = "on: workflow_call\njobs:\n  j:\n    runs-on: x\n    steps: [{run: a}]\n"
    top = f"on: push\njobs:\n  j:\n    uses: {ref.format(0)}\n"
    assert check_with(top, chain, max_call_depth=6) == []
    assert check_with(top, chain, max_call_depth=5) == [
        f"{ref.format(4)}:4:11: Calling '{ref.format(5)}' nests reusable workflows more "
        "than 5 levels deep"
    ]
