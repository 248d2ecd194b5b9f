"""The test suite stands alone: no code reads data from outside the repository.

Recorded data lives in ``tests/data/`` (see ``tests/datafiles.py``). Nothing under
``src/``, ``tests/``, ``bench/``, ``scripts/`` or ``.ci/`` may name the read-only folder
that sits beside a developer's checkout as a data source: a clone with nothing beside
it must pass. This file itself is not scanned (it spells the patterns out).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from datafiles import DATA

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("src", "tests", "bench", "scripts", ".ci")
SKIPPED_DIRS = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "out", "node_modules"}

# `../shared`, `shared/...`, `.../shared`, and `parent / "shared"` or `Path("shared")`.
FORBIDDEN = re.compile(r"""\.\./shared\b|\bshared/|/shared\b|(?:/\s*|Path\()["']shared["']""")


def _code_files() -> list[Path]:
    """Every file under the scanned folders, less caches, build metadata, installed npm
    packages (tests/node/node_modules) and tests/data."""
    files = []
    for top in SCANNED:
        for path in sorted((REPO / top).rglob("*")):
            parts = set(path.relative_to(REPO).parts)
            if not path.is_file() or parts & SKIPPED_DIRS or path.is_relative_to(DATA):
                continue
            if any(p.endswith(".egg-info") for p in parts) or path.suffix == ".pyc":
                continue
            if path != Path(__file__).resolve():
                files.append(path)
    return files


def _offending_lines(path: Path) -> list[str]:
    text = path.read_bytes().decode("utf-8", errors="replace")
    return [
        f"{path.relative_to(REPO)}:{n}: {line.strip()}"
        for n, line in enumerate(text.splitlines(), 1)
        if FORBIDDEN.search(line)
    ]


def test_no_code_reads_the_folder_beside_the_repository() -> None:
    files = _code_files()
    assert any(p.name == "conftest.py" for p in files)  # the scan does see the tests
    offending = [line for path in files for line in _offending_lines(path)]
    assert not offending, "\n".join(offending)


@pytest.mark.parametrize(
    ("line", "forbidden"),
    [
        ('SHARED = REPO.parent / "shared"', True),
        ("VECTORS = Path('shared') / 'conformance'", True),
        ("see ../shared/corpus/README.md", True),
        ('FIXTURES = "/work/shared"', True),
        ("read shared/fixtures/nix-2.8-errors", True),
        ('reg("shared", b"x", 0o666)', False),  # a tar member named shared
        ("the shared image cache", False),
        ("group: shared-${{ github.ref }}", False),
    ],
)
def test_pattern(line: str, forbidden: bool) -> None:
    assert bool(FORBIDDEN.search(line)) is forbidden


def test_recorded_data_is_in_the_repository() -> None:
    """Each part of tests/data is there (a missing part fails here and in its tests)."""
    expected = {"conformance", "corpus", "nix-2.8-errors", "README.md"}
    assert {p.name for p in DATA.iterdir()} == expected
    assert (DATA / "conformance" / "LICENSE-actions-languageservices").is_file()
    assert (DATA / "corpus" / "SOURCES").is_file()
    assert (DATA / "nix-2.8-errors" / "index.tsv").is_file()
