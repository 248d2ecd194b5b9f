"""``vmrunner runs ...`` through the real CLI, with real VMs under TCG: runs made by
separate processes are listed and shown (SQLite and PostgreSQL), every kind's ``--json``
validates against the one schema, a run is cancelled from another process, and a run
whose vmrunner was killed is marked interrupted by the next command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import git_repo, vmrunner
from vmrunner.results import validate_result

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("debian_image")]
TCG = ["exec", "--accel", "tcg", "--quiet"]
GOOD = "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n"
BAD_RECIPE = "image:\n  name: x\n  packages: nope\nchecks: 3\n"


def _popen(args: list[str], env: dict[str, str], **kw: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "vmrunner", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)  # fmt: skip


def _json(proc: subprocess.CompletedProcess[bytes]) -> Any:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _qemu_pids(state_dir: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes() if proc.name.isdigit() else b""
        except OSError:
            continue
        if b"qemu-system" in cmdline and str(state_dir).encode() in cmdline:
            found.append(int(proc.name))
    return found


def _left_behind(state_dir: Path) -> list[Path]:
    vms = state_dir / "vms"
    files = [p for p in state_dir.rglob("*") if p.suffix in (".sock", ".qcow2")]
    return files + (list(vms.iterdir()) if vms.exists() else [])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_runs_from_three_processes_are_listed_and_shown(
    backend: str, tmp_path: Path, vm_env: dict[str, str], request: pytest.FixtureRequest
) -> None:
    env = dict(vm_env)
    if backend == "postgresql":
        env["VMRUNNER_DATABASE_URL"] = request.getfixturevalue("db_url_pg")
    repo = git_repo(tmp_path / "repo", {".github/workflows/w.yml": GOOD.replace("push", "release")})
    (tmp_path / "bad.yml").write_text(BAD_RECIPE)
    outs = {k: tmp_path / f"{k}.json" for k in ("exec", "workflow", "systest")}
    procs = [
        _popen([*TCG, "--json", str(outs["exec"]), "--", "sh", "-c", "exit 3"], env),
        _popen(["run", "--json", str(outs["workflow"])], env, cwd=repo),
        _popen(["systest", str(tmp_path / "bad.yml"), "--json", str(outs["systest"])], env),
    ]
    codes = [p.wait(timeout=600) for p in procs]
    assert codes == [3, 0, 1], [p.stderr.read() for p in procs if p.stderr]  # type: ignore[misc]
    listed = _json(vmrunner(["runs", "list", "--json"], env))
    assert sorted(r["kind"] for r in listed) == ["exec", "systest", "workflow"]
    assert {r["kind"]: r["status"] for r in listed} == {
        "exec": "failure", "workflow": "success", "systest": "failure"}  # fmt: skip
    for kind, path in outs.items():
        doc = json.loads(path.read_text())
        assert validate_result(doc) == [], kind
        assert _json(vmrunner(["runs", "show", doc["id"], "--json"], env)) == doc
    only = _json(vmrunner(["runs", "list", "--json", "--kind", "exec"], env))
    assert [r["kind"] for r in only] == ["exec"]
    text = vmrunner(["runs", "show", json.loads(outs["exec"].read_text())["id"]], env)
    assert b"exit status 3" in text.stdout


def test_exec_json_validates_for_success_and_timeout(
    vm_env: dict[str, str], tmp_path: Path
) -> None:
    for argv, code, status in ((["true"], 0, "success"), (["sleep", "30"], 124, "timeout")):
        out = tmp_path / f"{status}.json"
        proc = vmrunner([*TCG, "--timeout", "2", "--json", str(out), "--", *argv], vm_env)
        assert proc.returncode == code, proc.stderr
        doc = json.loads(out.read_text())
        assert validate_result(doc) == [] and doc["status"] == status and doc["kind"] == "exec"
        assert doc["exit_status"] == code and doc["host"]


def _run_id_of(env: dict[str, str], kind: str) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        found = _json(vmrunner(["runs", "list", "--json", "--kind", kind], env))
        if found and found[0]["status"] == "running":
            return str(found[0]["id"])
        time.sleep(0.5)
    raise AssertionError(f"no running {kind} run")


def test_cancel_an_exec_from_another_process(vm_env: dict[str, str], state_dir: Path) -> None:
    out = state_dir.parent / "exec.json"
    proc = _popen([*TCG, "--json", str(out), "--", "sh", "-c", "echo up; sleep 300"], vm_env)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    run_id = _run_id_of(vm_env, "exec")
    started = time.monotonic()
    cancel = vmrunner(["runs", "cancel", run_id], vm_env)
    assert cancel.returncode == 0, cancel.stderr
    assert proc.wait(timeout=60) == 130
    assert time.monotonic() - started < 60  # long before the 300 s command would end
    doc = json.loads(out.read_text())
    assert doc["status"] == "cancelled" and validate_result(doc) == []
    assert "cancelled on request" in doc["errors"][0]["message"]
    assert _qemu_pids(state_dir) == [] and _left_behind(state_dir) == []


WAIT_WORKFLOW = """\
on: push
jobs:
  slow:
    runs-on: ubuntu-latest
    steps:
      - run: echo started-slow; sleep 300
"""


def test_cancel_a_workflow_run_from_another_process(
    vm_env: dict[str, str], state_dir: Path, tmp_path: Path
) -> None:
    repo = git_repo(tmp_path / "repo", {".github/workflows/w.yml": WAIT_WORKFLOW})
    out = tmp_path / "wf.json"
    proc = _popen(["run", "--accel", "tcg", "--json", str(out)], vm_env, cwd=repo)
    run_id = _run_id_of(vm_env, "workflow")
    log_deadline = time.monotonic() + 180
    while b"started-slow" not in vmrunner(["runs", "logs", run_id], vm_env).stdout:
        assert time.monotonic() < log_deadline, "the step never started"
        time.sleep(0.5)
    assert vmrunner(["runs", "cancel", run_id], vm_env).returncode == 0
    assert proc.wait(timeout=120) == 1
    doc = _json(vmrunner(["runs", "show", run_id, "--json"], vm_env))
    assert doc["status"] == "cancelled" and validate_result(doc) == []
    assert json.loads(out.read_text()) == doc
    assert _qemu_pids(state_dir) == [] and _left_behind(state_dir) == []


def test_kill_9_leaves_the_run_running_until_the_next_command(
    vm_env: dict[str, str], state_dir: Path
) -> None:
    cmd = [*TCG, "--", "sh", "-c", "echo up; sleep 300"]
    proc = _popen(cmd, vm_env, start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    run_id = _run_id_of(vm_env, "exec")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    conn = sqlite_status(state_dir, run_id)
    assert conn == "running"  # nothing marked it yet
    doc = _json(vmrunner(["runs", "show", run_id, "--json"], vm_env))
    assert doc["status"] == "error" and validate_result(doc) == []
    assert doc["errors"][0] == {"kind": "harness", "message": doc["errors"][0]["message"]}
    assert doc["errors"][0]["message"].startswith("interrupted")
    assert vmrunner(["gc"], vm_env).returncode == 0
    assert _qemu_pids(state_dir) == [] and _left_behind(state_dir) == []


def sqlite_status(state_dir: Path, run_id: str) -> str:
    import sqlite3

    with sqlite3.connect(state_dir / "vmrunner.db") as conn:
        row = conn.execute("SELECT status FROM runs WHERE id = ?", (int(run_id),)).fetchone()
    return str(row[0])


def test_exec_uses_the_config_files_cpus_and_memory_unless_flags_say_otherwise(
    vm_env: dict[str, str], tmp_path: Path
) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('cpus = 1\nmemory_mib = 700\naccel = "tcg"\n')
    env = {**vm_env, "VMRUNNER_CONFIG": str(cfg)}
    out = tmp_path / "e.json"
    proc = vmrunner(["exec", "--quiet", "--json", str(out), "--", "nproc"], env)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    assert proc.stdout == b"1\n" and (doc["cpus"], doc["memory_mib"], doc["accel"]) == (
        1,
        700,
        "tcg",
    )
    proc = vmrunner(["exec", "--quiet", "--cpus", "2", "--json", str(out), "--", "nproc"], env)
    assert proc.stdout == b"2\n" and json.loads(out.read_text())["cpus"] == 2
