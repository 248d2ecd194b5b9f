"""Cancellation in real VMs: fail-fast cancels the other matrix job; its
``if: always()`` and ``if: cancelled()`` steps still run, its plain steps do not.

The failing job waits before it fails so that the other job's VM is up and its first
step running when the cancellation comes: a job cancelled while its VM still boots has
no steps at all (as a GitHub job cancelled before a runner took it), and under a loaded
CI machine two TCG boots can finish many seconds apart."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import vmrunner
from vmrunner.results import validate_result

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("debian_image")]

WORKFLOW = """\
on: push
jobs:
  m:
    runs-on: ubuntu-latest
    strategy:
      fail-fast: true
      matrix:
        kind: [fails, slow]
    steps:
      - name: work
        run: |
          if [ "${{ matrix.kind }}" = fails ]; then sleep 40; exit 1; fi
          echo started-slow
          sleep 400
      - name: plain
        run: echo plain-ran
      - name: on cancel
        if: cancelled()
        run: echo cancelled-ran
      - name: always
        if: always()
        run: echo always-ran
"""


def test_fail_fast_cancels_and_always_steps_still_run(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".github/workflows").mkdir(parents=True)
    (repo / ".github/workflows/ci.yml").write_text(WORKFLOW)
    for args in (["init", "-q", "-b", "main"], ["add", "-A"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=t",
            "commit",
            "-qm",
            "ci",
        ],
        check=True,
    )
    state = tmp_path / "state"
    state.mkdir()
    env = {**os.environ, "VMRUNNER_HOME": str(state)}
    out = tmp_path / "r.json"
    proc = vmrunner(["run", "--accel", "tcg", "--json", str(out)], env, timeout=700, cwd=repo)
    doc: dict[str, Any] = json.loads(out.read_text())
    assert validate_result(doc) == []
    assert proc.returncode == 1
    jobs = {j["matrix"]["kind"]: j for j in doc["jobs"]}
    assert jobs["fails"]["status"] == "failure"
    slow = jobs["slow"]
    assert slow["status"] == "cancelled"
    steps = {s["name"]: s for s in slow["steps"]}
    assert steps["plain"]["conclusion"] == "skipped"
    assert steps["on cancel"]["conclusion"] == "success"
    assert steps["always"]["conclusion"] == "success"
    assert "always-ran" in steps["always"]["log_tail"]
    assert "cancelled-ran" in steps["on cancel"]["log_tail"]
    assert doc["duration_s"] < 300, "the slow job was cancelled, not waited for"
