"""``vmrunner run`` end to end: real workflows in real VMs (TCG), through the real CLI.

One repository holds a workflow that exercises most semantics at once (each job is one
VM); concurrency gets its own small workflow run by three processes.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import concurrency_groups, vmrunner
from vmrunner.results import validate_result

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("debian_image")]

MAIN = """
name: main
on:
  push:
    branches: [main]
    paths-ignore: ["docs/**"]
env:
  LEVEL: workflow
  OVERRIDE: workflow
jobs:
  m:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        os: [a, b]
        n: [1, 2]
        exclude: [{os: b, n: 2}]
        include: [{os: c, n: 3, extra: yes}]
    outputs:
      last: ${{ steps.o.outputs.v }}
    steps:
      - id: o
        run: |
          echo "combo ${{ matrix.os }}-${{ matrix.n }} ${{ strategy.job-index }}/${{ strategy.job-total }} extra=${{ matrix.extra }}"
          echo "v=${{ matrix.os }}${{ matrix.n }}" >> "$GITHUB_OUTPUT"
  main:
    runs-on: ubuntu-24.04
    env:
      OVERRIDE: job
    defaults:
      run:
        shell: bash
    outputs:
      word: ${{ steps.files.outputs.word }}
      multi: ${{ steps.files.outputs.multi }}
    steps:
      - uses: actions/checkout@v4
        with:
          path: src
      - name: checked out
        run: |
          test "$(cat src/hello.txt)" = "hello from the repo" && test -x src/tool.sh
          test "$(git -C src rev-parse HEAD)" = "$GITHUB_SHA"
          test "${{ hashFiles('src/hello.txt') }}" = "$(python3 -c 'import hashlib; print(hashlib.sha256(hashlib.sha256(open("src/hello.txt", "rb").read()).digest()).hexdigest())')"
      - name: contexts
        env:
          OVERRIDE: step
        run: |
          echo "level=$LEVEL override=$OVERRIDE"
          echo "ctx ${{ github.event_name }} ${{ github.ref }} ${{ github.ref_name }} ${{ github.ref_type }} ${{ github.sha == env.SHA_HINT || 'sha' }} ${{ runner.os }} ${{ job.status }} ${{ github.workspace == env.GITHUB_WORKSPACE }}"
          test "$GITHUB_SHA" = "${{ github.sha }}" && test "$RUNNER_TEMP" = "${{ runner.temp }}"
          echo "var=${{ vars.COLOUR }} input=${{ inputs.nothing }}"
      - id: files
        run: |
          echo "FROM_ENV=set by env file" >> "$GITHUB_ENV"
          { echo "BLOCK<<EOF_X"; echo "line one"; echo "line two"; echo "EOF_X"; } >> "$GITHUB_ENV"
          echo "word=bird" >> "$GITHUB_OUTPUT"
          { echo "multi<<ZZ"; echo "a"; echo "b"; echo "ZZ"; } >> "$GITHUB_OUTPUT"
          mkdir -p /opt/mybin && printf '#!/bin/sh\\necho from-path\\n' > /opt/mybin/mytool && chmod +x /opt/mybin/mytool
          echo /opt/mybin >> "$GITHUB_PATH"
          echo "### Summary here" >> "$GITHUB_STEP_SUMMARY"
      - name: env files applied
        run: |
          echo "FROM_ENV=$FROM_ENV"
          test "$BLOCK" = "$(printf 'line one\\nline two')"
          mytool
          test "${{ steps.files.outputs.word }}" = bird
      - name: masking
        env:
          TOKEN: ${{ secrets.API_TOKEN }}
        run: |
          echo "the token is $TOKEN"
          echo "::add-mask::hunter2-masked"
          echo "after mask: hunter2-masked"
          echo "::error file=src/tool.sh,line=7::bad thing with $TOKEN"
          echo "::group::grouped"
          echo "inside group"
          echo "::endgroup::"
          echo "::stop-commands::tok123"
          echo "::warning::not a command"
          echo "::tok123::"
      - name: slow
        id: slow
        timeout-minutes: 0.05
        continue-on-error: true
        run: sleep 60
      - name: after timeout
        run: echo "still running after the timeout, ${{ steps.slow.outcome }}/${{ steps.slow.conclusion }}"
      - uses: ./src/.github/actions/greet
        id: greet
        with:
          who: world
      - run: echo "greeting=${{ steps.greet.outputs.greeting }} nested=${{ steps.greet.outputs.nested }}"
      - name: python
        shell: python
        run: |
          import os
          print("python says", os.environ["LEVEL"])
      - name: custom shell
        shell: sh -e {0}
        run: echo custom shell ok
      - name: pwsh
        id: pwsh
        shell: pwsh
        continue-on-error: true
        run: Write-Host hi
      - name: remote action
        id: remote
        continue-on-error: true
        uses: someone/some-action@v1
  fails:
    runs-on: ubuntu-latest
    steps:
      - run: exit 1
      - name: on failure
        if: failure()
        run: echo "failure() ran"
      - name: never
        run: echo "should not run"
      - name: always
        if: always()
        run: echo "always() ran"
  job_timeout:
    runs-on: ubuntu-latest
    timeout-minutes: 0.05
    continue-on-error: true
    steps:
      - run: sleep 60
      - name: not reached
        run: echo never
  boxed:
    runs-on: ubuntu-latest
    container: debian:12
    steps:
      - run: echo never
  odd_label:
    runs-on: windows-latest
    steps:
      - run: echo never
  after:
    needs: [m, main, job_timeout]
    runs-on: ubuntu-latest
    steps:
      - run: |
          echo "needs ${{ needs.main.outputs.word }} ${{ needs.main.result }} ${{ needs.m.result }} ${{ needs.job_timeout.result }}"
          test "${{ needs.main.outputs.word }}" = bird
  skipped_after_failure:
    needs: fails
    runs-on: ubuntu-latest
    steps:
      - run: echo never
  on_failure:
    needs: fails
    if: failure()
    runs-on: ubuntu-latest
    steps:
      - run: echo "job-level failure() ran"
  call:
    uses: ./.github/workflows/reusable.yml
    with:
      name: caller
    secrets:
      token: ${{ secrets.API_TOKEN }}
  report:
    needs: call
    runs-on: ubuntu-latest
    steps:
      - run: echo "called said ${{ needs.call.outputs.said }}"
"""

REUSABLE = """
name: reusable
on:
  workflow_call:
    inputs:
      name: {type: string, required: true}
      greeting: {type: string, default: hello}
    secrets:
      token: {required: true}
    outputs:
      said:
        value: ${{ jobs.inner.outputs.said }}
jobs:
  inner:
    runs-on: ubuntu-latest
    outputs:
      said: ${{ steps.s.outputs.said }}
    steps:
      - id: s
        run: |
          echo "inner ${{ inputs.greeting }} ${{ inputs.name }} token=${{ secrets.token }}"
          echo "said=${{ inputs.greeting }}-${{ inputs.name }}" >> "$GITHUB_OUTPUT"
"""

GREET = """
name: greet
inputs:
  who: {required: true}
  punctuation: {default: "!"}
outputs:
  greeting:
    value: ${{ steps.g.outputs.text }}
  nested:
    value: ${{ steps.n.outputs.inner }}
runs:
  using: composite
  steps:
    - id: g
      shell: bash
      run: |
        echo "text=hello ${{ inputs.who }}${{ inputs.punctuation }}" >> "$GITHUB_OUTPUT"
        test -f "$GITHUB_ACTION_PATH/action.yml" && echo "action path ok"
    - id: n
      uses: ./src/.github/actions/inner
"""

INNER = """
name: inner
outputs:
  inner: {value: "${{ steps.i.outputs.v }}"}
runs:
  using: composite
  steps:
    - id: i
      shell: sh
      run: echo "v=deep" >> "$GITHUB_OUTPUT"
"""

CONC = """
name: conc
on: push
concurrency:
  group: shared-${{ github.ref }}
jobs:
  hold:
    runs-on: ubuntu-latest
    steps:
      - run: sleep ${{ vars.SLEEP }}
"""


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


def _repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir()
    _write(root, files)
    git = ["git", "-C", str(root)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "config", "user.email", "t@example.com"], check=True)
    subprocess.run([*git, "config", "user.name", "tester"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    return root


def _doc(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    assert validate_result(doc) == []
    return doc


def _jobs(doc: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for job in doc["jobs"]:
        out.setdefault(job["id"], []).append(job)
    return out


def _steps(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in job["steps"]}


@pytest.fixture(scope="module")
def main_run(
    tmp_path_factory: pytest.TempPathFactory, debian_image: Path
) -> tuple[subprocess.CompletedProcess[bytes], dict[str, Any], Path]:
    import os

    tmp = tmp_path_factory.mktemp("e2e")
    state = tmp / "state"
    state.mkdir()
    # remote actions come from local directories only (someone/some-action: none there)
    env = {**os.environ, "VMRUNNER_HOME": str(state),
           "VMRUNNER_GITHUB_GIT_URL": f"file://{tmp}/remotes/{{owner}}/{{repo}}.git"}  # fmt: skip
    repo = _repo(
        tmp / "repo",
        {
            ".github/workflows/main.yml": MAIN,
            ".github/workflows/reusable.yml": REUSABLE,
            ".github/actions/greet/action.yml": GREET,
            ".github/actions/inner/action.yml": INNER,
            "hello.txt": "hello from the repo",
            "tool.sh": "#!/bin/sh\necho tool\n",
        },
    )
    (repo / "tool.sh").chmod(0o755)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "mode"], check=True)
    secrets = tmp / "secrets.env"
    secrets.write_text("API_TOKEN=s3cr3t-value\n")
    out = tmp / "result.json"
    args = ["run", "--accel", "tcg", "--secret-file", str(secrets), "--var", "COLOUR=blue"]
    proc = vmrunner([*args, "--json", str(out)], env, timeout=600, cwd=repo)
    return proc, _doc(out), state


def test_a_failing_job_fails_the_run(main_run: Any) -> None:
    proc, doc, _ = main_run
    assert proc.returncode == 1, proc.stderr.decode()[-3000:]
    assert doc["status"] == "failure"
    assert doc["kind"] == "workflow"
    jobs = _jobs(doc)
    assert jobs["fails"][0]["status"] == "failure"
    steps = _steps(jobs["fails"][0])
    assert steps["on failure"]["outcome"] == "success"
    assert steps["never"]["outcome"] == "skipped"
    assert steps["always"]["outcome"] == "success"
    assert jobs["skipped_after_failure"][0]["status"] == "skipped"
    assert jobs["on_failure"][0]["status"] == "success"


def test_matrix_include_exclude_and_strategy(main_run: Any) -> None:
    _, doc, _ = main_run
    combos = [j["matrix"] for j in _jobs(doc)["m"]]
    assert combos == [
        {"os": "a", "n": 1}, {"os": "a", "n": 2}, {"os": "b", "n": 1},
        {"os": "c", "n": 3, "extra": "yes"},
    ]  # fmt: skip
    names = [j["name"] for j in _jobs(doc)["m"]]
    assert names[0] == "m (a, 1)"
    tail = _jobs(doc)["m"][3]["steps"][0]["log_tail"]
    assert "combo c-3 3/4 extra=yes" in tail


def test_needs_outputs_and_contexts(main_run: Any) -> None:
    _, doc, _ = main_run
    jobs = _jobs(doc)
    assert jobs["main"][0]["outputs"] == {"word": "bird", "multi": "a\nb"}
    assert "needs bird success success success" in jobs["after"][0]["steps"][0]["log_tail"]
    steps = _steps(jobs["main"][0])
    assert steps["checked out"]["outcome"] == "success"
    ctx = steps["contexts"]["log_tail"]
    assert "level=workflow override=step" in ctx
    assert "ctx push refs/heads/main main branch sha Linux success true" in ctx
    assert "var=blue input=" in ctx


def test_env_files_path_and_summary(main_run: Any) -> None:
    _, doc, _ = main_run
    main = _jobs(doc)["main"][0]
    steps = _steps(main)
    assert steps["env files applied"]["outcome"] == "success", steps["env files applied"]
    assert "FROM_ENV=set by env file" in steps["env files applied"]["log_tail"]
    assert "from-path" in steps["env files applied"]["log_tail"]
    assert "### Summary here" in main["summary"]


def test_secrets_and_masks_never_leak(main_run: Any) -> None:
    proc, doc, state = main_run
    masking = _steps(_jobs(doc)["main"][0])["masking"]
    assert "the token is ***" in masking["log_tail"]
    assert "after mask: ***" in masking["log_tail"]
    assert "inside group" in masking["log_tail"]
    assert "::warning::not a command" in masking["log_tail"]
    assert masking["annotations"][0]["file"] == "src/tool.sh"
    assert masking["annotations"][0]["line"] == 7
    assert masking["annotations"][0]["message"] == "bad thing with ***"
    assert any(e["kind"] == "annotation" and e.get("line") == 7 for e in doc["errors"])
    inner = _jobs(doc)["call/inner"][0]
    assert "token=***" in inner["steps"][0]["log_tail"]
    blobs = [proc.stdout, proc.stderr]
    blobs += [p.read_bytes() for p in (state / "runs").rglob("*") if p.is_file()]
    for blob in blobs:
        assert b"s3cr3t-value" not in blob
        assert b"hunter2-masked" not in blob


def test_step_timeout_and_continue_on_error(main_run: Any) -> None:
    _, doc, _ = main_run
    steps = _steps(_jobs(doc)["main"][0])
    slow = steps["slow"]
    assert (slow["outcome"], slow["conclusion"], slow["timed_out"]) == ("failure", "success", True)
    assert slow["duration_s"] < 30
    assert "still running after the timeout, failure/success" in steps["after timeout"]["log_tail"]
    assert _jobs(doc)["main"][0]["status"] == "success"


def test_composite_action_reusable_workflow_and_clear_errors(main_run: Any) -> None:
    _, doc, _ = main_run
    main = _jobs(doc)["main"][0]
    steps = {s["id"]: s for s in main["steps"]}
    assert steps["greet"]["outputs"] == {"greeting": "hello world!", "nested": "deep"}
    assert "action path ok" in steps["greet"]["log_tail"]
    assert steps["pwsh"]["outcome"] == "failure"
    assert "'pwsh' is not installed" in steps["pwsh"]["log_tail"]
    assert steps["remote"]["outcome"] == "failure"
    assert "someone/some-action@v1" in steps["remote"]["log_tail"]
    py = _steps(main)["python"]
    assert "python says workflow" in py["log_tail"]
    assert "custom shell ok" in _steps(main)["custom shell"]["log_tail"]
    jobs = _jobs(doc)
    assert "inner hello caller token=***" in jobs["call/inner"][0]["steps"][0]["log_tail"]
    assert "called said hello-caller" in jobs["report"][0]["steps"][0]["log_tail"]


def test_concurrency_newer_pending_run_cancels_the_older(
    tmp_path: Path, vm_env: dict[str, str]
) -> None:
    repo = _repo(tmp_path / "repo", {".github/workflows/conc.yml": CONC})
    outs = [tmp_path / f"r{i}.json" for i in range(3)]

    def start(i: int, sleep: int) -> subprocess.Popen[bytes]:
        argv = ["run", "--accel", "tcg", "--var", f"SLEEP={sleep}", "--json", str(outs[i])]
        import sys

        return subprocess.Popen(
            [sys.executable, "-m", "vmrunner", *argv], env=vm_env, cwd=repo,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip

    first = start(0, 12)
    state_dir = Path(vm_env["VMRUNNER_HOME"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not concurrency_groups(state_dir):
        time.sleep(0.2)
    second = start(1, 1)
    time.sleep(2)
    third = start(2, 1)
    codes = [p.wait(timeout=300) for p in (first, second, third)]
    docs = [_doc(o) for o in outs]
    assert [d["status"] for d in docs] == ["success", "cancelled", "success"], [
        p.stderr.read() for p in (first, second, third) if p.stderr
    ]
    assert codes == [0, 1, 0]
    assert docs[1]["jobs"][0]["status"] == "cancelled"
    # the third started only after the first finished
    assert docs[2]["jobs"][0]["steps"] and docs[2]["started_at"] < docs[2]["finished_at"]
    assert docs[0]["finished_at"] <= docs[2]["finished_at"]


def test_job_timeout_container_and_unknown_label(main_run: Any) -> None:
    _, doc, _ = main_run
    jobs = _jobs(doc)
    timed = jobs["job_timeout"][0]
    assert timed["status"] == "failure"
    # the job's 3 s ran out while its first step ran, or (under a slow TCG) before it began
    first = timed["steps"][0]
    assert first["timed_out"] is True or first["outcome"] in ("cancelled", "skipped"), first
    assert timed["steps"][1]["outcome"] == "skipped"
    assert timed["duration_s"] < 40
    messages = {
        e.get("job"): e["message"] for e in doc["errors"] if e["kind"] in ("job", "timeout")
    }
    assert "timed out" in messages["job_timeout"]
    assert jobs["boxed"][0]["status"] == "failure"
    assert "container:" in messages["boxed"] and "Docker" in messages["boxed"]
    # as act does: a label that maps to no image skips the job, saying why
    assert jobs["odd_label"][0]["status"] == "skipped"
    assert "windows-latest" in jobs["odd_label"][0]["reason"]
