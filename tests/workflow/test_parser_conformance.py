"""GitHub's own workflow-parser cases (tests/data/conformance/workflow-parser/).

Each case file holds documents separated by ``---``: the options, the workflow, then for
reusable workflows pairs of (reference, file), and last the expected result: the parsed
form, or ``{"errors": [...]}`` with messages like ``FILE (Line: L, Col: C): message``.

What is asserted: a case whose expected result is a parsed form gives no diagnostics at
all; an error case gives, for every expected error, a diagnostic in the same file on the
same line (and column, except that an expression error is at its ``${{``, at or right of
the start of the value where GitHub puts it; an expected
error without a position needs any error in that file). Matching GitHub's full parsed
form is not attempted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from datafiles import PARSER_CASES_SKIPPED_BY_GITHUB_TS, parser_case_files
from vmrunner.workflow.check import CheckOptions, Diagnostic, WorkflowSource, check_text

# Cases we deliberately do not match, and why. Each name must exist (test below).
DELIBERATE_MISMATCHES = {
    # `max-result-size` bounds the size of GitHub's serialized template tokens (its own
    # internal format, 1141 vs 1128 bytes here); there is nothing equivalent to count.
    "errors-max-result-size.yml": "limit on GitHub's internal serialized form",
    # Expects unknown keys directly under `workflow_dispatch` to be errors (line 3), which
    # only GitHub's TypeScript parser does (the case says `skip: [Go, C#]`). GitHub's
    # server (the C# parser) ignores them, which on-workflow_dispatch-unknown-keys-ignored
    # asserts (and the TS parser skips). We follow the server, so we match line 6
    # (an unknown key in an input) but not line 3.
    "events-single-invalid.yml": "TypeScript-only rule that contradicts the C# parser",
}

_SEPARATOR = re.compile(r"(?m)^---[ \t]*$\n?")
_LOCATED = re.compile(r"^(?P<file>.*?) \(Line: (?P<line>\d+), Col: (?P<col>\d+)\): ", re.S)
_UNLOCATED = re.compile(r"^(?P<file>[^:(]*?): ")
_POLICIES = {"LimitedRead": "limited-read", "Write": "write"}


@dataclass(frozen=True)
class Expected:
    file: str
    line: int | None
    col: int | None
    message: str


@dataclass
class Case:
    name: str
    options: dict[str, Any]
    workflow: str
    called: dict[str, str]
    parsed: dict[str, Any]
    errors: list[Expected] = field(default_factory=list)

    @property
    def filename(self) -> str:
        return f".github/workflows/{self.name}"


def _expected(message: str) -> Expected:
    if m := _LOCATED.match(message):
        return Expected(m["file"], int(m["line"]), int(m["col"]), message[m.end() :])
    m = _UNLOCATED.match(message)
    assert m is not None, message
    return Expected(m["file"], None, None, message[m.end() :])


def load_case(path: Path) -> Case:
    docs = _SEPARATOR.split(path.read_text("utf-8"))
    options = YAML(typ="safe").load(docs[0]) or {}
    parsed = json.loads(docs[-1])
    called = {docs[i].strip(): docs[i + 1] for i in range(2, len(docs) - 1, 2)}
    errors = [_expected(e["Message"]) for e in parsed.get("errors", [])]
    return Case(path.name, options, docs[1], called, parsed, errors)


def run_case(case: Case) -> list[Diagnostic]:
    options = CheckOptions(
        permissions_policy=_POLICIES.get(case.options.get("permissions-policy", ""), "write"),  # type: ignore[arg-type]
        max_file_size=case.options.get("max-file-size", CheckOptions.max_file_size),
        max_call_depth=case.options.get(
            "max-nested-reusable-workflows-depth", CheckOptions.max_call_depth
        ),
    )

    def resolve(ref: str) -> WorkflowSource | None:
        return WorkflowSource(ref, case.called[ref]) if ref in case.called else None

    return check_text(case.workflow, case.filename, options=options, resolver=resolve)


def _found(expected: Expected, diagnostics: list[Diagnostic]) -> bool:
    same_file = [d for d in diagnostics if d.file == expected.file]
    if expected.line is None:
        return bool(same_file)
    return any(d.line == expected.line and _same_column(expected, d) for d in same_file)


def _same_column(expected: Expected, found: Diagnostic) -> bool:
    """GitHub puts an expression's error at the start of the value; check puts it at the
    ``${{`` (issue 14), which is at or right of it."""
    if found.code == "expression":
        return expected.col is not None and found.col >= expected.col
    return found.col == expected.col


CASE_PATHS = parser_case_files()


@pytest.mark.parametrize("path", CASE_PATHS, ids=[p.name for p in CASE_PATHS])
def test_case(path: Path) -> None:
    case = load_case(path)
    diagnostics = run_case(case)
    shown = "\n".join(d.format() for d in diagnostics)
    if path.name in DELIBERATE_MISMATCHES:
        missed = [e for e in case.errors if not _found(e, diagnostics)]
        assert missed, f"{path.name} now matches: take it out of DELIBERATE_MISMATCHES"
        return
    if not case.errors:
        assert not diagnostics, f"valid workflow reported:\n{shown}"
        return
    for expected in case.errors:
        assert _found(expected, diagnostics), f"missing {expected}; got:\n{shown}"


def test_deliberate_mismatches_name_real_cases() -> None:
    names = {p.name for p in CASE_PATHS}
    assert set(DELIBERATE_MISMATCHES) <= names


def test_case_counts() -> None:
    """Guards against the directory shrinking unnoticed (or growing without a look)."""
    cases = [load_case(p) for p in CASE_PATHS]
    assert len(cases) == 97
    assert sum(1 for c in cases if c.errors) == 44


def test_skip_list_is_readable() -> None:
    """The TS skip list explains several of the cases above; keep it where we expect."""
    names = PARSER_CASES_SKIPPED_BY_GITHUB_TS.read_text("utf-8").split()
    assert "on-workflow_dispatch-unknown-keys-ignored.yml" in names
