"""Every real workflow in shared/corpus/ loads and checks clean.

The corpus keeps each repository's layout (``repos/OWNER__REPO/.github/workflows/``), so
``check_file`` resolves local reusable workflows (``./`` and ``$/``) as GitHub would.
It holds only some of each repository's workflows, though: a call to a local workflow the
corpus did not copy is reported as missing (GitHub reports a missing called workflow
too). Those, and only those, are accepted below, each one checked to really be absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vmrunner.workflow.check import check_file
from vmrunner.workflow.loader import load_file
from vmrunner.workflow.model import build_workflow

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CORPUS = SHARED / "corpus" / "repos"
FILES = sorted(CORPUS.glob("*/.github/workflows/*.y*ml")) if CORPUS.is_dir() else []

# Real-world files GitHub would reject: none so far.
KNOWN_INVALID: dict[str, str] = {}

pytestmark = pytest.mark.skipif(not FILES, reason=f"workflow corpus not found in {CORPUS}")


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

    (The corpus README says 17; counting distinct targets, or including same-repository
    calls written as OWNER/REPO/...@ref, gives other numbers still, so this pins ours.)
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
