"""Learning wired into real runs: a job fails the same way three times, then passes after
a change; the lesson names the change as its fix, and explain on a failed run shows it."""

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

FAILING = """\
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - name: prepare
        run: echo preparing
      - name: test
        run: python3 -c "import yaml_parser_missing"
"""
FIXED = """\
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    env:
      USE_STDLIB: "1"
    steps:
      - name: prepare
        run: echo preparing
      - name: test
        run: python3 -c "import json"
"""


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def _run(repo: Path, env: dict[str, str], out: Path) -> dict[str, Any]:
    proc = vmrunner(["run", "--accel", "tcg", "--json", str(out)], env, timeout=300, cwd=repo)
    doc: dict[str, Any] = json.loads(out.read_text())
    assert validate_result(doc) == [], doc
    assert proc.returncode == (0 if doc["status"] == "success" else 1), proc.stderr
    return doc


def test_three_failures_become_a_lesson_with_the_change_as_fix(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    env = {**os.environ, "VMRUNNER_HOME": str(state)}
    repo = tmp_path / "repo"
    (repo / ".github/workflows").mkdir(parents=True)
    (repo / ".github/workflows/ci.yml").write_text(FAILING)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "t@example.com")
    _git(repo, "config", "user.name", "tester")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "ci")
    failed = [_run(repo, env, tmp_path / f"fail{i}.json") for i in range(3)]
    assert [d["status"] for d in failed] == ["failure"] * 3
    # the first failure is new; by the third, the run's own result carries the history
    third = failed[2]["learning"]["failed_steps"][0]
    assert third["occurrences_before"] == 2
    assert third["template"].startswith("ModuleNotFoundError: No module named")
    assert third["lesson"] is not None and third["lesson"]["occurrences"] == 3

    (repo / ".github/workflows/ci.yml").write_text(FIXED)
    _git(repo, "commit", "-qam", "use the stdlib")
    assert _run(repo, env, tmp_path / "pass.json")["status"] == "success"

    lessons = json.loads(vmrunner(["learn", "lessons", "--json"], env).stdout)["lessons"]
    assert len(lessons) == 1
    lesson = lessons[0]
    assert lesson["occurrences"] == 3
    fix_text = json.dumps(lesson["fix"])
    assert "import json" in fix_text, lesson["fix"]
    assert "USE_STDLIB" in fix_text, lesson["fix"]  # the env change is part of the fix
    assert lesson["fix"]["job"] == "build" and lesson["fix"]["confidence"] > 0.5
    assert {c["kind"] for c in lesson["fix"]["changes"]} >= {"changed"}

    explained = json.loads(vmrunner(["learn", "explain", failed[0]["id"], "--json"], env).stdout)
    assert explained["found"] is True
    step = explained["failed_steps"][0]
    assert step["step_name"] == "test"
    assert step["lesson"]["fix"] == lesson["fix"]

    predicted = json.loads(
        vmrunner(
            ["learn", "predict", 'python3 -c "import yaml_parser_missing"', "--json"], env
        ).stdout
    )
    assert predicted["probability"] < 0.5
    related = json.loads(vmrunner(["learn", "related", "echo preparing", "--json"], env).stdout)
    assert related["observations"] == 4
    assert any("python3" in json.dumps(row) for row in related["after"])
