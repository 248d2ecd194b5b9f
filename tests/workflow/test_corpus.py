"""Every real workflow in tests/data/corpus/ loads and checks clean.

The corpus keeps each repository's layout (``repos/OWNER__REPO/.github/workflows/``), so
``check_file`` resolves local reusable workflows (``./`` and ``$/``) as GitHub would.
It holds only some of each repository's workflows, though: a call to a local workflow the
corpus did not copy is reported as missing (GitHub reports a missing called workflow
too). Those, and only those, are accepted below, each one checked to really be absent.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from datafiles import CORPUS_REPOS, CORPUS_SOURCES, corpus_files
from vmrunner.workflow.check import check_file
from vmrunner.workflow.loader import load_file
from vmrunner.workflow.model import build_workflow

CORPUS = CORPUS_REPOS
FILES = corpus_files()

# Real-world files GitHub's parser rejects.
KNOWN_INVALID: dict[str, str] = {
    # `create:` takes no filters (GitHub's template schema: `create` is null only); the
    # TypeScript parser says "A mapping was not expected" on line 4.
    "helm__helm/.github/workflows/release.yml": "filters under `create`",
}


def _repo_root(path: Path) -> Path:
    return path.parents[2]


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CORPUS)) for p in FILES])
def test_corpus_file_checks_clean(path: Path) -> None:
    diagnostics = check_file(path)
    unexpected = []
    for d in diagnostics:
        if d.code == "reusable-workflow-missing":
            ref = d.message.split("'")[1]
            assert not (_repo_root(path) / ref[2:]).exists(), d.format()
            continue
        unexpected.append(d.format())
    if str(path.relative_to(CORPUS)) in KNOWN_INVALID:
        assert unexpected
    else:
        assert not unexpected, "\n".join(unexpected)


def test_corpus_size_and_resolved_calls() -> None:
    """124 files; 16 job-level `./` or `$/` calls find their workflow in the corpus.

    (Counting distinct targets, or including same-repository calls written as
    OWNER/REPO/...@ref, gives other numbers, so this pins ours.)
    """
    assert len(FILES) == 124
    resolved = 0
    for path in FILES:
        workflow = build_workflow(load_file(path))
        assert workflow is not None
        for job in workflow.jobs:
            ref = job.uses.text if job.uses else ""
            if ref.startswith(("./", "$/")) and (_repo_root(path) / ref[2:]).is_file():
                resolved += 1
    assert resolved == 16


def test_known_invalid_names_exist() -> None:
    assert {str(p.relative_to(CORPUS)) for p in FILES} >= set(KNOWN_INVALID)


def _sources() -> list[dict[str, str]]:
    lines = [x for x in CORPUS_SOURCES.read_text("utf-8").splitlines() if not x.startswith("#")]
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


def test_sources_names_every_file_and_only_those() -> None:
    rows = _sources()
    assert [r["file"] for r in rows if not (CORPUS_REPOS.parent / r["file"]).is_file()] == []
    assert {r["file"] for r in rows} == {f"repos/{p.relative_to(CORPUS)}" for p in FILES}
    assert len(rows) == len(FILES)


@pytest.mark.parametrize("row", _sources(), ids=lambda r: r["file"])
def test_sources_row_names_repository_commit_and_licence(row: dict[str, str]) -> None:
    owner_repo = row["file"].split("/")[1]
    assert row["repository"].replace("/", "__", 1) == owner_repo
    assert re.fullmatch(r"[0-9a-f]{40}", row["commit"]), row["commit"]
    assert row["licence"], row
    if "GPL" in row["licence"]:  # copyleft: its full text ships beside the files
        assert row["note"] == f"licence text: LICENSES/{row['licence']}"
        assert (CORPUS_REPOS.parent / "LICENSES" / row["licence"]).is_file()
