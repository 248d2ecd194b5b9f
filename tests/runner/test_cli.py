"""``vmrunner check`` and the no-VM paths of ``vmrunner run``, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import git_repo, vmrunner

GOOD = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n"
BAD = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: nope\n    steps:\n      - run: echo hi\n"


_repo = git_repo  # one git fixture repository helper, in conftest


def test_check_reports_file_line_col_and_exits_1(tmp_path: Path, vm_env: dict[str, str]) -> None:
    _repo(tmp_path, {".github/workflows/good.yml": GOOD, ".github/workflows/bad.yaml": BAD})
    proc = vmrunner(["check"], vm_env, cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stdout.decode().splitlines()
    # GitHub's parser reports both: the unknown job, and no job left to start with
    assert len(lines) == 2 and all(
        ln.startswith(f"{tmp_path}/.github/workflows/bad.yaml:") for ln in lines
    )
    assert any(
        ln.startswith(f"{tmp_path}/.github/workflows/bad.yaml:5:") and "nope" in ln for ln in lines
    )
    proc = vmrunner(["check", "--json", str(tmp_path / ".github/workflows/good.yml")], vm_env)
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {"ok": True, "diagnostics": []}


def test_run_with_nothing_triggered_says_so_and_exits_0(
    tmp_path: Path, vm_env: dict[str, str]
) -> None:
    _repo(tmp_path, {".github/workflows/w.yml": GOOD.replace("on: push", "on: pull_request")})
    proc = vmrunner(["run", "--json", str(tmp_path / "r.json")], vm_env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert b"nothing to run" in proc.stdout
    assert b"pull_request" in proc.stdout or b"push" in proc.stdout


def test_run_of_an_invalid_workflow_is_an_error_result(
    tmp_path: Path, vm_env: dict[str, str]
) -> None:
    from vmrunner.results import validate_result

    _repo(tmp_path, {".github/workflows/w.yml": BAD})
    out = tmp_path / "r.json"
    proc = vmrunner(["run", "--json", str(out)], vm_env, cwd=tmp_path)
    assert proc.returncode == 125
    doc = json.loads(out.read_text())
    assert validate_result(doc) == []
    assert doc["status"] == "error"
    assert any(e["kind"] == "workflow" and e["line"] == 5 for e in doc["errors"]), doc["errors"]
    stored = Path(vm_env["VMRUNNER_HOME"]) / "runs" / doc["id"] / "result.json"
    assert json.loads(stored.read_text()) == doc


def test_run_outside_a_git_repository_is_a_harness_error(
    tmp_path: Path, vm_env: dict[str, str]
) -> None:
    env = {**vm_env, "GIT_CEILING_DIRECTORIES": str(tmp_path)}
    proc = vmrunner(["run"], env, cwd=tmp_path)
    assert proc.returncode == 125
    assert b"not in a git repository" in proc.stderr
