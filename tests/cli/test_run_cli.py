"""``vmrunner run`` with act's flags, through the real CLI, without a VM: ``-l``, ``-g``,
``-n``, ``-j``, ``-e``, ``-C``, ``-W``, ``-a``, ``--defaultbranch``, ``-P``, ``--env``,
``--var``, ``--input``, ``-s``, ``--matrix``, the event positional and its check, the
``runs-on`` skip (every job skipped: no VM boots) and ``--strict-platforms``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import git_repo, vmrunner

CI = """\
name: CI
on:
  push:
    branches: [main]
  pull_request:
jobs:
  build:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        os: [linux, bsd]
        v: [1, 2, 3]
    steps:
      - uses: actions/checkout@v4
      - name: build ${{ matrix.os }}/${{ matrix.v }} by ${{ github.actor }}
        run: make
  test:
    needs: build
    runs-on: ${{ vars.RUNNER || 'ubuntu-latest' }}
    steps:
      - name: "env=${{ env.LEVEL }} var=${{ vars.COLOUR }} secret=${{ secrets.TOKEN }}"
        run: make test
  mac:
    runs-on: macos-latest
    steps:
      - run: echo mac
  deploy:
    needs: [test, mac]
    runs-on: ubuntu-latest
    steps:
      - run: echo deploy
"""
DISPATCH = """\
name: Manual
on:
  workflow_dispatch:
    inputs:
      target: {default: staging}
jobs:
  ship:
    name: ship to ${{ inputs.target }} from ${{ github.event.repository.default_branch }}
    runs-on: ubuntu-22.04
    steps:
      - run: echo ship
"""
RELEASE = "on:\n  push:\n    branches: [release]\njobs:\n  rel:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo r\n"


_repo = git_repo  # one git fixture repository helper, in conftest


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return _repo(tmp_path / "repo", {
        ".github/workflows/ci.yml": CI, ".github/workflows/manual.yml": DISPATCH,
        ".github/workflows/release.yml": RELEASE,
    })  # fmt: skip


def _out(args: list[str], env: dict[str, str], cwd: Path, code: int = 0) -> str:
    proc = vmrunner(["run", *args], env, cwd=cwd)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert b"\x1b" not in proc.stdout + proc.stderr  # piped: no escape codes
    return proc.stdout.decode() + proc.stderr.decode()


def _rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()[1:] if line and line[0].isdigit()]


@pytest.mark.parametrize(
    ("args", "rows"),
    [
        # act: no event named -> every job of every workflow
        ([], {("0", "build", "6"), ("0", "mac", "1"), ("1", "test", "1"), ("2", "deploy", "1"),
              ("0", "ship", "1"), ("0", "rel", "1")}),
        (["push"], {("0", "build", "6"), ("0", "mac", "1"), ("1", "test", "1"), ("2", "deploy", "1")}),
        (["workflow_dispatch"], {("0", "ship", "1")}),
        (["push", "--matrix", "os:bsd"], {("0", "build", "3"), ("0", "mac", "1"), ("1", "test", "1"),
                                          ("2", "deploy", "1")}),
        (["push", "--matrix", "os:bsd", "--matrix", "v:2"], {("0", "build", "1"), ("0", "mac", "1"),
                                                            ("1", "test", "1"), ("2", "deploy", "1")}),
        (["push", "--matrix", "v:1", "--matrix", "v:3"], {("0", "build", "4"), ("0", "mac", "1"),
                                                         ("1", "test", "1"), ("2", "deploy", "1")}),
        (["push", "-j", "test"], {("0", "build", "6"), ("1", "test", "1")}),  # with what it needs
    ],
)  # fmt: skip
def test_list(
    repo: Path, vm_env: dict[str, str], args: list[str], rows: set[tuple[str, ...]]
) -> None:
    text = _out([*args, "-l", "--json", str(repo / "plan.json")], vm_env, repo)
    assert text.splitlines()[0].split() == [
        "STAGE", "JOB", "ID", "JOB", "NAME", "MATRIX", "WORKFLOW", "NAME", "WORKFLOW", "FILE", "EVENTS"
    ]  # fmt: skip
    jobs = json.loads((repo / "plan.json").read_text())["jobs"]
    assert {(str(j["stage"]), j["id"], str(j["matrix_size"])) for j in jobs} == rows
    assert {tuple(r[:2]) for r in _rows(text)} == {r[:2] for r in rows}


def test_list_writes_the_plan_as_json_and_names_what_is_not_triggered(
    repo: Path, vm_env: dict[str, str]
) -> None:
    text = _out(["pull_request", "--list", "--json", str(repo / "plan.json")], vm_env, repo)
    assert "not triggered: .github/workflows/release.yml" in text
    plan = json.loads((repo / "plan.json").read_text())
    assert plan["event"] == "pull_request"
    assert [(j["id"], j["stage"], j["matrix_size"]) for j in plan["jobs"]] == [
        ("build", 0, 6), ("mac", 0, 1), ("test", 1, 1), ("deploy", 2, 1)
    ]  # fmt: skip
    assert all(j["workflow"] == ".github/workflows/ci.yml" for j in plan["jobs"])


def test_graph_shows_needs_by_stage(repo: Path, vm_env: dict[str, str]) -> None:
    text = _out(["push", "-g"], vm_env, repo)
    assert text.splitlines()[:9] == [
        ".github/workflows/ci.yml (CI)", "  stage 0", "    build", "    mac", "  stage 1",
        "    test <- build", "  stage 2", "    deploy <- test, mac",
        "not triggered: .github/workflows/manual.yml: the workflow does not run on 'push'",
    ]  # fmt: skip


def test_dryrun_evaluates_expressions_and_starts_nothing(
    repo: Path, vm_env: dict[str, str]
) -> None:
    args = ["push", "-n", "-a", "octo", "--env", "LEVEL=3", "--var", "COLOUR=blue",
            "-s", "TOKEN=s3cr3t", "--matrix", "v:1", "-P", "big-runner=debian",
            "--var", "RUNNER=big-runner"]  # fmt: skip
    text = _out(args, vm_env, repo)
    assert 'build (linux, 1) {"os": "linux", "v": 1} on ubuntu-latest -> debian' in text
    assert "      - build linux/1 by octo" in text
    assert "      - build bsd/2 by octo" not in text  # --matrix v:1
    assert "test on big-runner -> debian" in text  # -P and --var in runs-on
    assert "      - env=3 var=blue secret=***" in text  # secrets masked
    assert "s3cr3t" not in text
    assert "mac on macos-latest: skipped: runs-on label 'macos-latest' maps to no image" in text
    # deploy needs mac, which would be skipped: deploy would be skipped too
    assert "deploy [stage 2, needs test, mac]: skipped" in text
    assert not (Path(vm_env["VMRUNNER_HOME"]) / "runs").exists()  # nothing kept, no VM


def test_dryrun_of_workflow_dispatch_with_inputs_and_default_branch(
    repo: Path, vm_env: dict[str, str], tmp_path: Path
) -> None:
    default = _out(["workflow_dispatch", "-n", "--defaultbranch", "trunk"], vm_env, repo)
    assert "ship to staging from trunk on ubuntu-22.04 -> debian" in default
    (repo / ".input").write_text("target=production # act's default input file\n")
    given = _out(["workflow_dispatch", "-n"], vm_env, repo)
    assert "ship to production from  on" in given  # no --defaultbranch: none in the payload
    flag = _out(["workflow_dispatch", "-n", "--input", "target=qa"], vm_env, repo)
    assert "ship to qa" in flag


def test_eventpath_is_the_payload_not_the_event_name(
    repo: Path, vm_env: dict[str, str], tmp_path: Path
) -> None:
    """``-e`` is act's --eventpath: the payload's ref decides the branch filters."""
    payload = tmp_path / "event.json"
    payload.write_text(json.dumps({"ref": "refs/heads/release"}))
    text = _out(["-e", str(payload), "-l", "push"], vm_env, repo)
    assert {r[1] for r in _rows(text)} == {"rel"}
    assert "not triggered: .github/workflows/ci.yml" in text


def test_directory_and_relative_workflow_paths(
    repo: Path, vm_env: dict[str, str], tmp_path: Path
) -> None:
    text = _out(["-C", str(repo), "-W", ".github/workflows/release.yml", "-l"], vm_env, tmp_path)
    assert [r[1] for r in _rows(text)] == ["rel"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-j", "nope"], "-j nope: no such job (jobs: build, deploy, mac, rel, ship, test)"),
        (["-j", "ship"], "-j ship: 'push' triggers no workflow with the job"),
        (["-j", "nope", "-l", "push"], "-j nope: no such job"),
        (["pushh"], "unknown event 'pushh' (did you mean 'push'?): known events are"),
        (["-e", "missing.json"], "--eventpath"),
        (["-W", "nowhere.yml", "-l"], "nowhere.yml does not exist"),
        (
            ["--secret", "UNSET_SECRET_X"],
            "--secret UNSET_SECRET_X: no value given and $UNSET_SECRET_X is not set",
        ),
    ],
)
def test_bad_input_is_an_error_not_exit_0(
    repo: Path, vm_env: dict[str, str], args: list[str], message: str
) -> None:
    env = {k: v for k, v in vm_env.items() if k != "UNSET_SECRET_X"}
    text = _out(args, env, repo, code=125)
    assert message in text
    assert not (Path(vm_env["VMRUNNER_HOME"]) / "runs").exists() or not any(
        (Path(vm_env["VMRUNNER_HOME"]) / "runs").iterdir()
    )


PLATFORMS = """\
on: push
jobs:
  mac:
    runs-on: macos-latest
    steps: [{run: echo mac}]
  win:
    name: "windows [/x] :v: 1:100:2"
    runs-on: windows-latest
    steps: [{run: echo win}]
  old:
    runs-on: [ubuntu-18.04]
    steps: [{run: echo old}]
  after:
    needs: mac
    runs-on: ubuntu-latest
    steps: [{run: echo after}]
"""


def test_jobs_whose_runs_on_maps_to_no_image_are_skipped(
    tmp_path: Path, vm_env: dict[str, str]
) -> None:
    repo = _repo(tmp_path / "repo", {".github/workflows/p.yml": PLATFORMS})
    out = repo / "r.json"
    text = _out(["--json", str(out)], vm_env, repo)
    doc = json.loads(out.read_text())
    assert doc["status"] == "success" and doc["errors"] == []
    jobs = {j["id"]: j for j in doc["jobs"]}
    assert {k: j["status"] for k, j in jobs.items()} == dict.fromkeys(
        ("mac", "win", "old", "after"), "skipped"
    )
    assert "'windows-latest' maps to no image" in jobs["win"]["reason"]
    assert jobs["old"]["runs_on"] == "ubuntu-18.04"
    assert "reason" not in jobs["after"]  # skipped by its needs, not by its platform
    # the clear line, and user text printed as written (no markup, no emoji codes)
    assert "vmrunner: windows [/x] :v: 1:100:2: skipped: runs-on label 'windows-latest'" in text
    assert "windows [/x] :v: 1:100:2  skipped" in text


def test_strict_platforms_fails_such_jobs(tmp_path: Path, vm_env: dict[str, str]) -> None:
    repo = _repo(tmp_path / "repo", {".github/workflows/p.yml": PLATFORMS})
    out = repo / "r.json"
    _out(["--strict-platforms", "--json", str(out)], vm_env, repo, code=1)
    doc = json.loads(out.read_text())
    assert doc["status"] == "failure"
    assert {e["job"] for e in doc["errors"]} == {"mac", "win", "old"}
    assert all("--strict-platforms" in e["message"] for e in doc["errors"])


def test_version_and_completion(vm_env: dict[str, str], tmp_path: Path) -> None:
    from vmrunner import __version__

    proc = vmrunner(["--version"], vm_env)
    assert proc.returncode == 0 and proc.stdout.decode() == f"vmrunner {__version__}\n"
    proc = vmrunner(["--show-completion", "bash"], {**vm_env, "SHELL": "/bin/bash"})
    assert proc.returncode == 0 and b"complete" in proc.stdout


@pytest.mark.parametrize(
    ("args", "option", "choices"),
    [
        (["exec", "--accel", "fast", "--", "true"], "--accel", "'auto', 'kvm', 'tcg'"),
        (["exec", "--network", "host", "--", "true"], "--network", "'none', 'user'"),
        (["exec", "--boot", "slow", "--", "true"], "--boot", "'fast', 'systemd'"),
        (["systest", "--flavor", "arch", "x.yml"], "--flavor", "'debian', 'nixos'"),
        (["systest", "--accel", "xen", "x.yml"], "--accel", "'auto', 'kvm', 'tcg'"),
        (["run", "--accel", "xen"], "--accel", "'auto', 'kvm', 'tcg'"),
    ],
)
def test_choices_are_rejected_before_anything_starts(
    vm_env: dict[str, str], tmp_path: Path, args: list[str], option: str, choices: str
) -> None:
    proc = vmrunner(args, vm_env, cwd=tmp_path)
    assert proc.returncode == 2
    assert f"Invalid value for '{option}'" in proc.stderr.decode()
    assert choices in proc.stderr.decode()
    assert not any(Path(vm_env["VMRUNNER_HOME"]).iterdir())  # nothing started, nothing kept
    help_text = vmrunner([args[0], "--help"], vm_env).stdout.decode()
    assert choices.replace("'", "").replace(", ", "|") in help_text
