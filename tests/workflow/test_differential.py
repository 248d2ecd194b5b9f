"""``check`` against GitHub's own TypeScript parser (``@actions/workflow-parser``, run
with node: see github_parser.py) on the corpus, the workflow-parser conformance cases and
workflows Hypothesis generates from GitHub's template schema (with mutations).

Agreement means: both accept, or both reject with errors on the same set of lines.
Every disagreement is either a failure here or explained by an entry below, with its
reason: per file or case for the recorded sets, per rule for the generated one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from datafiles import (
    CORPUS_REPOS,
    PARSER_CASES_SKIPPED_BY_GITHUB_TS,
    corpus_files,
    parser_case_files,
)
from vmrunner.workflow.check import Diagnostic, WorkflowSource, check_text
from vmrunner.workflow.loader import load_file
from vmrunner.workflow.model import build_workflow
from workflow.github_parser import GithubError, Request, github_parse
from workflow.template_gen import workflows
from workflow.test_parser_conformance import load_case, run_case

GENERATED = 2500

# Conformance cases where check follows GitHub's server (its C# parser) and the
# TypeScript parser does not; most are in GitHub's own list of cases the TypeScript
# parser skips (tests/data/conformance/workflow-parser-skipped-tests.txt): the server's
# limits, reusable-workflow permissions, step ids, YAML tags and types it does not check.
SERVER_ONLY = frozenset(PARSER_CASES_SKIPPED_BY_GITHUB_TS.read_text("utf-8").split())
CONFORMANCE_DISAGREEMENTS = {
    # TypeScript-only: unknown keys under workflow_dispatch are errors there; the server
    # ignores them (on-workflow_dispatch-unknown-keys-ignored) and so does check.
    "events-single-invalid.yml": "TypeScript-only rule that contradicts the server",
}
# Corpus files the two disagree on: none.
CORPUS_DISAGREEMENTS: dict[str, str] = {}

# Rules check applies that the TypeScript parser does not (GitHub's server does: each
# is a conformance case or GitHub's documented behaviour). A diagnostic of ours starting
# with one of these, on a line GitHub reports nothing on, is explained.
SERVER_RULES = (
    "Invalid workflow reference",  # a job's `uses` must name a workflow file
    "Matrix vector",  # errors-matrix-empty-vector (TS skips it)
    "Container image cannot be empty",  # for services too (TS converts only some)
    "Job '",  # needs of reusable-workflow jobs and self-cycles: TS does not look
)
# GitHub's own cascades that check leaves out on purpose (issue 14): a key reported
# missing, or a step or job it cannot tell apart, when check already said which key
# was misspelled; and "no job without dependencies" when a job could not be read.
CASCADES = (
    "Required property is missing: ",
    "There's not enough info to determine what you meant",
    "The workflow must contain at least one job with no dependencies.",
)

STOPS = "Unexpected type '"


@dataclass(frozen=True)
class Verdict:
    agree: bool  # as the two parsers stand, before any explanation
    explained: bool  # agree once the documented differences are taken out


def _lines(errors: list[GithubError], file: str) -> set[int]:
    return {e.line for e in errors if e.line is not None and e.file in (file, None)}


def compare(github: list[GithubError], ours: list[Diagnostic], file: str) -> bool:
    """Both accept, or both reject with errors on the same lines of ``file`` (GitHub's
    errors without a position count as any line)."""
    if bool(github) != bool(ours):
        return False
    if any(e.line is None for e in github):
        return True
    return _lines(github, file) == {d.line for d in ours if d.file == file}


def explain(github: list[GithubError], ours: list[Diagnostic], file: str) -> Verdict:
    """The verdict on a generated workflow, with :data:`SERVER_RULES`, :data:`CASCADES`
    and what check finds after GitHub stopped (:data:`STOPS`) taken out."""
    raw = compare(github, ours, file)
    theirs = _lines(github, file)
    # GitHub stops converting at a value of the wrong type; check reads on.
    stop = min((e.line or 0 for e in github if e.message.startswith(STOPS)), default=None)
    kept = [
        d
        for d in ours
        if d.line in theirs
        or not (d.message.startswith(SERVER_RULES) or (stop is not None and d.line > stop))
    ]
    hinted = any("(did you mean" in d.message for d in ours)
    ours_lines = {d.line for d in kept}
    failed_job = any(d.message.startswith(("Unexpected value", "A ")) for d in ours)
    github_kept = [
        e
        for e in github
        if not (
            e.line not in ours_lines and e.message.startswith(CASCADES) and (hinted or failed_job)
        )
    ]
    return Verdict(raw, compare(github_kept, kept, file))


def _generated() -> list[str]:
    texts: list[str] = []

    @settings(
        max_examples=GENERATED,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(workflows())
    def collect(text: str) -> None:
        texts.append(text)

    collect()
    return texts


def test_generated_workflows() -> None:
    texts = _generated()
    assert len(texts) == GENERATED
    github = github_parse([Request("w.yml", t) for t in texts])
    verdicts = [
        explain(g, check_text(t, "w.yml"), "w.yml") for t, g in zip(texts, github, strict=True)
    ]
    rejected = sum(1 for g in github if g)
    assert GENERATED // 5 < rejected < GENERATED * 4 // 5  # the mutations bite, not always
    unexplained = [t for t, v in zip(texts, verdicts, strict=True) if not v.explained]
    assert not unexplained, f"{len(unexplained)} disagreements, first:\n{unexplained[0]}"


def test_conformance_cases() -> None:
    cases = [load_case(p) for p in parser_case_files()]
    requests = [Request(c.filename, c.workflow, c.called, fetch=bool(c.called)) for c in cases]
    github = github_parse(requests)
    differ = {
        c.name
        for c, g in zip(cases, github, strict=True)
        if not compare(g, run_case(c), c.filename)
    }
    documented = set(CONFORMANCE_DISAGREEMENTS) | SERVER_ONLY
    assert differ <= documented, sorted(differ - documented)
    assert set(CONFORMANCE_DISAGREEMENTS) <= differ  # an entry that now agrees must go


def _corpus_request(path: Path) -> Request:
    """The file, and the local workflows it calls that the corpus holds. GitHub's parser
    fetches them only when every call is local (it cannot see other repositories)."""
    root = path.parents[2]
    workflow = build_workflow(load_file(path))
    assert workflow is not None
    refs = [job.uses.text for job in workflow.jobs if job.uses]
    local = [r for r in refs if r.startswith(("./", "$/"))]
    called = {r: (root / r[2:]).read_text("utf-8") for r in local if (root / r[2:]).is_file()}
    return Request(str(path), path.read_text("utf-8"), called, fetch=bool(local) and local == refs)


def _check_like(request: Request) -> list[Diagnostic]:
    def resolve(ref: str) -> WorkflowSource | None:
        if ref in request.called:
            return WorkflowSource(ref, request.called[ref])
        return WorkflowSource(ref, None) if ref.startswith(("./", "$/")) else None

    return check_text(request.content, request.name, resolver=resolve)


def test_corpus() -> None:
    files = corpus_files()
    requests = [_corpus_request(p) for p in files]
    github = github_parse(requests)
    differ = {
        str(p.relative_to(CORPUS_REPOS))
        for p, r, g in zip(files, requests, github, strict=True)
        if not compare(g, _check_like(r), r.name)
    }
    assert differ == set(CORPUS_DISAGREEMENTS)


def test_rejections_are_seen_by_both() -> None:
    """The comparison can fail: a workflow only one side rejects is a disagreement."""
    text = "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: a\n"
    github = github_parse([Request("w.yml", text), Request("w.yml", text + "oops: 1\n")])
    assert github[0] == [] and [e.line for e in github[1]] == [7]
    assert compare(github[0], check_text(text, "w.yml"), "w.yml")
    assert not compare(github[1], [], "w.yml")
    assert not compare([], check_text(text + "oops: 1\n", "w.yml"), "w.yml")
