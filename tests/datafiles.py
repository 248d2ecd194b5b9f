"""Where the tests' recorded data lives: ``tests/data/``, inside the repository.

Every test that reads recorded data (GitHub's conformance cases, the workflow corpus,
recorded Nix output) takes its path from here. The data is part of the checkout, so a
missing file is a failure, never a skip.
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"

CONFORMANCE = DATA / "conformance"
EXPRESSION_VECTORS = CONFORMANCE / "expressions"
PARSER_CASES = CONFORMANCE / "workflow-parser"
PARSER_CASES_SKIPPED_BY_GITHUB_TS = CONFORMANCE / "workflow-parser-skipped-tests.txt"

CORPUS = DATA / "corpus"
CORPUS_REPOS = CORPUS / "repos"
CORPUS_SOURCES = CORPUS / "SOURCES"

NIX_OUTPUTS = DATA / "nix-2.8-errors"


def corpus_files() -> list[Path]:
    """Every corpus workflow file, sorted."""
    return sorted(CORPUS_REPOS.glob("*/.github/workflows/*.y*ml"))


def parser_case_files() -> list[Path]:
    """Every workflow-parser case file, sorted."""
    return sorted(PARSER_CASES.glob("*.yml"))
