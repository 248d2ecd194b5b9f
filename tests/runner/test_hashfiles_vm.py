"""``hashFiles()`` in a real VM (TCG), through the real CLI: a step sees the workspace as the
steps before it left it, not as it was when the job's first hash was computed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from conftest import vmrunner

from .test_vm_e2e import _doc, _jobs, _repo

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("debian_image")]

WORKFLOW = """
on: push
jobs:
  h:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - id: before
        run: |
          echo "hash before: ${{ hashFiles('f.txt') }}"
          echo "h=${{ hashFiles('f.txt') }}" >> "$GITHUB_OUTPUT"
      - run: printf 'rewritten by step 2\\n' > f.txt
      - id: after
        run: |
          echo "hash after: ${{ hashFiles('f.txt') }}"
          echo "h=${{ hashFiles('f.txt') }}" >> "$GITHUB_OUTPUT"
"""


def github_hash(content: bytes) -> str:
    """GitHub's hashFiles of one file: the SHA-256 of the file's SHA-256 digest."""
    return hashlib.sha256(hashlib.sha256(content).digest()).hexdigest()


def test_hash_files_sees_a_file_rewritten_by_an_earlier_step(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    repo = _repo(tmp_path / "repo", {".github/workflows/h.yml": WORKFLOW, "f.txt": "original\n"})
    out = tmp_path / "r.json"
    env = {**os.environ, "VMRUNNER_HOME": str(state)}
    proc = vmrunner(["run", "--accel", "tcg", "--json", str(out)], env, timeout=600, cwd=repo)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    doc = _doc(out)
    [job] = _jobs(doc)["h"]
    steps = {s["id"]: s for s in job["steps"]}
    before, after = steps["before"]["outputs"]["h"], steps["after"]["outputs"]["h"]
    assert before == github_hash(b"original\n")
    assert after == github_hash(b"rewritten by step 2\n")
    assert f"hash after: {after}" in steps["after"]["log_tail"]
