"""The scheduler and step semantics against a fake guest that runs on the host."""

from __future__ import annotations

import asyncio
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from vmrunner.results import validate_result
from vmrunner.runner.context import GuestLayout, RunInfo, git_info, make_event
from vmrunner.runner.engine import RunEnv, WorkflowExecution
from vmrunner.runner.output import NullReporter
from vmrunner.store.concurrency import ConcurrencyStore
from vmrunner.store.engine import open_store
from vmrunner.workflow.check import load_workflow
from vmrunner.workflow.masking import Masker

from .fakes import HostFactory


def _git_repo(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "f.txt").write_text("x")
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "c"]):  # fmt: skip
        subprocess.run(["git", "-C", str(root), *argv], check=True)
    return root


def _run(tmp_path: Path, text: str, **env_kw: Any) -> tuple[RunEnv, dict[str, Any]]:
    repo = _git_repo(tmp_path / "repo")
    git = git_info(repo)
    layout = GuestLayout(home=str(tmp_path / "guest"), tool_cache=str(tmp_path / "tools"))
    info = RunInfo("42", 7, "wf", "wf.yml", git, make_event(git, "push", None, {}), layout)
    workflow = load_workflow(textwrap.dedent(text), "wf.yml")
    env = RunEnv(info, HostFactory(), NullReporter(), Masker(), tmp_path / "run",
                 ConcurrencyStore(open_store(f"sqlite:///{tmp_path}/conc/store.db")), **env_kw)  # fmt: skip
    summaries = asyncio.run(WorkflowExecution(env, workflow, "wf.yml").run())
    return env, {k: v for k, v in summaries.items()}


def _entries(env: RunEnv) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for _, e in sorted(env.entries, key=lambda p: p[0]):
        out.setdefault(e.id, []).append(e)
    return out


def test_a_job_starts_when_its_own_needs_finish_not_at_a_stage_barrier(tmp_path: Path) -> None:
    stamp = tmp_path / "stamps"
    wf = f"""
    on: push
    jobs:
      slow:
        runs-on: ubuntu-latest
        steps:
          - run: sleep 1.5; echo "slow-end $(date +%s.%N)" >> {stamp}
      quick:
        runs-on: ubuntu-latest
        steps:
          - run: "true"
      next:
        needs: quick
        runs-on: ubuntu-latest
        steps:
          - run: echo "next-start $(date +%s.%N)" >> {stamp}
    """
    _env, summaries = _run(tmp_path, wf)
    assert {k: v.result for k, v in summaries.items()} == dict.fromkeys(
        ("slow", "quick", "next"), "success"
    )
    times = dict(line.split() for line in stamp.read_text().splitlines())
    assert float(times["next-start"]) < float(times["slow-end"])


def test_outputs_needs_and_job_if(tmp_path: Path) -> None:
    wf = """
    on: push
    jobs:
      a:
        runs-on: ubuntu-latest
        outputs:
          x: ${{ steps.s.outputs.x }}
        steps:
          - id: s
            run: echo "x=hello" >> "$GITHUB_OUTPUT"
      b:
        needs: a
        if: needs.a.outputs.x == 'hello'
        runs-on: ubuntu-latest
        steps:
          - run: test "${{ needs.a.result }}" = success
      c:
        needs: a
        if: needs.a.outputs.x == 'nope'
        runs-on: ubuntu-latest
        steps:
          - run: exit 1
    """
    _env, summaries = _run(tmp_path, wf)
    assert summaries["a"].outputs == {"x": "hello"}
    assert summaries["b"].result == "success"
    assert summaries["c"].result == "skipped"


def test_fail_fast_cancels_the_other_matrix_jobs(tmp_path: Path) -> None:
    wf = """
    on: push
    jobs:
      m:
        runs-on: ubuntu-latest
        strategy:
          matrix:
            n: [1, 2, 3]
        steps:
          - run: if [ ${{ matrix.n }} = 1 ]; then exit 1; fi; sleep 3
    """
    env, summaries = _run(tmp_path, wf)
    assert summaries["m"].result == "failure"
    statuses = sorted(e.status for e in _entries(env)["m"])
    assert statuses == ["cancelled", "cancelled", "failure"]


def test_max_parallel_one_runs_the_matrix_one_at_a_time(tmp_path: Path) -> None:
    stamp = tmp_path / "stamps"
    wf = f"""
    on: push
    jobs:
      m:
        runs-on: ubuntu-latest
        strategy:
          max-parallel: 1
          fail-fast: false
          matrix:
            n: [1, 2, 3]
        steps:
          - run: |
              echo "start ${{{{ matrix.n }}}} $(date +%s.%N)" >> {stamp}
              sleep 0.3
              echo "end ${{{{ matrix.n }}}} $(date +%s.%N)" >> {stamp}
              test "${{{{ strategy.max-parallel }}}}/${{{{ strategy.fail-fast }}}}" = 1/false
    """
    _env, summaries = _run(tmp_path, wf)
    assert summaries["m"].result == "success"
    events = [line.split() for line in stamp.read_text().splitlines()]
    assert [e[0] for e in events] == ["start", "end"] * 3


def test_a_matrix_over_256_jobs_is_a_clear_job_error(tmp_path: Path) -> None:
    wf = """
    on: push
    jobs:
      big:
        runs-on: ubuntu-latest
        strategy:
          matrix:
            a: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]
            b: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
        steps:
          - run: "true"
    """
    env, summaries = _run(tmp_path, wf)
    assert summaries["big"].result == "failure"
    assert any("256" in e.message for e in env.errors)


def test_matrix_filter_and_step_semantics(tmp_path: Path) -> None:
    wf = """
    on: push
    env:
      A: wf
    jobs:
      m:
        runs-on: [self-hosted, linux]
        env:
          B: job
        strategy:
          matrix:
            n: [1, 2]
        steps:
          - run: echo "::add-mask::topsecret"; echo "value topsecret"; echo "A=from-file" >> "$GITHUB_ENV"
          - id: check
            env:
              B: step
            run: test "$A/$B" = "from-file/step"
          - run: exit 3
            continue-on-error: true
          - if: steps.check.outcome == 'success'
            run: echo "ran"
          - if: failure()
            run: echo "not ran"
    """
    env, _ = _run(tmp_path, wf, matrix_filter={"n": "2"})
    (entry,) = _entries(env)["m"]
    assert entry.matrix == {"n": 2}
    outcomes = [(s.outcome, s.conclusion) for s in entry.steps]
    assert outcomes == [("success", "success"), ("success", "success"), ("failure", "success"),
                        ("success", "success"), ("skipped", "skipped")]  # fmt: skip
    assert "value ***" in entry.steps[0].log_tail
    assert "topsecret" not in Path(entry.log or "").read_text()


@pytest.mark.parametrize(
    ("strict", "result", "reason"),
    [(False, "skipped", "maps to no image"), (True, "failure", None)],
)
def test_job_concurrency_and_a_label_with_no_image(
    tmp_path: Path, strict: bool, result: str, reason: str | None
) -> None:
    """act's habit: a job whose runs-on maps to no image is skipped, with the reason in its
    entry; --strict-platforms makes it a failure with an error naming the label."""
    wf = """
    on: push
    jobs:
      one:
        runs-on: ubuntu-latest
        concurrency: same
        steps:
          - run: "true"
      two:
        runs-on: macos-latest
        steps:
          - run: "true"
      after:
        needs: two
        runs-on: ubuntu-latest
        steps:
          - run: "true"
    """
    env, summaries = _run(tmp_path, wf, strict_platforms=strict)
    assert summaries["one"].result == "success"
    assert summaries["two"].result == result
    assert summaries["after"].result == "skipped"
    (two,) = _entries(env)["two"]
    if reason is None:
        assert two.reason is None
        assert any("macos-latest" in e.message for e in env.errors)
    else:
        assert two.runs_on == "macos-latest"
        assert reason in (two.reason or "") and "-P macos-latest=" in (two.reason or "")
        assert env.errors == []


def test_concurrency_store_pending_runs_and_dead_owners(tmp_path: Path) -> None:
    store = ConcurrencyStore(open_store(f"sqlite:///{tmp_path}/store.db"))
    assert store.admit("g", "r1", False) == "running"
    assert store.admit("g", "r2", False) == "pending"
    assert store.admit("G", "r3", False) == "pending"  # group names ignore case
    assert store.slot("g", "r2") == "cancelled"
    assert store.slot("g", "r3") == "pending"
    store.release("g", "r1")
    assert store.slot("g", "r3") == "running"
    assert store.admit("g", "r4", True) == "pending"
    assert store.is_cancelled("r3")
    other = ConcurrencyStore(
        open_store(f"sqlite:///{tmp_path}/store.db")
    )  # another process: same database
    assert other.slot("g", "r4") == "pending"


def test_results_from_a_fake_run_validate(tmp_path: Path) -> None:
    from vmrunner.results import RunDocument

    env, _ = _run(
        tmp_path,
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n",
    )
    doc = RunDocument("42", "workflow", "success", 1.0, 2.0, "fake",
                      tuple(env.errors), tuple(e for _, e in env.entries)).to_dict()  # fmt: skip
    assert validate_result(doc) == []


@pytest.mark.parametrize(
    ("shell", "argv"),
    [
        (None, ["bash", "-e", "S"]),
        ("bash", ["bash", "--noprofile", "--norc", "-eo", "pipefail", "S"]),
        ("sh", ["sh", "-e", "S"]),
        ("python", ["python", "S"]),
        ("perl -w {0}", ["perl", "-w", "S"]),
    ],
)
def test_shell_templates(shell: str | None, argv: list[str]) -> None:
    from vmrunner.runner.guest import resolve_shell

    assert resolve_shell(shell).command("S") == argv


@pytest.mark.parametrize("shell", ["cmd", "powershell", "perl -w"])
def test_bad_shells_are_clear_errors(shell: str) -> None:
    from vmrunner.runner.guest import ShellError, resolve_shell

    with pytest.raises(ShellError):
        resolve_shell(shell)


def test_hash_files_hashes_the_workspace_the_steps_see(tmp_path: Path) -> None:
    import hashlib

    out = tmp_path / "hashes"
    wf = f"""
    on: push
    jobs:
      h:
        runs-on: ubuntu-latest
        steps:
          - uses: actions/checkout@v4
          - run: mkdir -p a/b .hid && echo one > a/x.lock && echo two > a/b/y.lock && echo 3 > .hid/z.lock
          - if: hashFiles('nothing/**') == ''
            env:
              ALL: ${{{{ hashFiles('**/*.lock') }}}}
              NOT_B: ${{{{ hashFiles('**/*.lock', '!a/b/**') }}}}
              TXT: ${{{{ hashFiles('f.txt', 'missing') }}}}
              DIR: ${{{{ hashFiles('a') }}}}
            run: printf '%s\\n' "$ALL" "$NOT_B" "$TXT" "$DIR" "${{{{ hashFiles('none') }}}}" > {out}
    """
    _env, summaries = _run(tmp_path, wf)
    assert summaries["h"].result == "success"

    def expected(*contents: bytes) -> str:
        return hashlib.sha256(b"".join(hashlib.sha256(c).digest() for c in contents)).hexdigest()

    # sorted by path: .hid/z.lock, a/b/y.lock, a/x.lock
    assert out.read_text().splitlines() == [
        expected(b"3\n", b"two\n", b"one\n"),
        expected(b"3\n", b"one\n"),
        expected(b"x"),
        expected(b"two\n", b"one\n"),
        "",
    ]


def test_after_a_cancellation_always_and_cancelled_steps_still_run(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    wf = f"""
    on: push
    jobs:
      m:
        runs-on: ubuntu-latest
        strategy:
          matrix:
            n: [1, 2]
        steps:
          - run: if [ ${{{{ matrix.n }}}} = 1 ]; then exit 1; fi; sleep 3
          - run: echo "plain ${{{{ matrix.n }}}}" >> {marks}
          - if: failure()
            run: echo "failure ${{{{ matrix.n }}}}" >> {marks}
          - if: always()
            run: echo "always ${{{{ matrix.n }}}} ${{{{ job.status }}}}" >> {marks}
          - if: cancelled()
            run: echo "cancelled ${{{{ matrix.n }}}}" >> {marks}
    """
    env, summaries = _run(tmp_path, wf)
    assert summaries["m"].result == "failure"
    assert sorted(marks.read_text().splitlines()) == [
        "always 1 failure", "always 2 cancelled", "cancelled 2", "failure 1",
    ]  # fmt: skip
    entries = {e.matrix["n"]: e for e in _entries(env)["m"]}
    assert entries[2].status == "cancelled"
    assert [s.conclusion for s in entries[2].steps] == [
        "cancelled", "skipped", "skipped", "success", "success",
    ]  # fmt: skip


def test_checkout_is_a_git_clone_of_the_commit(tmp_path: Path) -> None:
    out = tmp_path / "out"
    wf = f"""
    on: push
    jobs:
      c:
        runs-on: ubuntu-latest
        steps:
          - uses: actions/checkout@v4
          - uses: actions/checkout@v4
            with:
              path: sub/dir
          - run: |
              git rev-parse HEAD > {out}
              git rev-parse --abbrev-ref HEAD >> {out}
              git -C sub/dir rev-parse HEAD >> {out}
              git status --porcelain >> {out}
              cat f.txt >> {out}
    """
    _env, summaries = _run(tmp_path, wf)
    assert summaries["c"].result == "success"
    sha = subprocess.run(
        ["git", "-C", str(tmp_path / "repo"), "rev-parse", "HEAD"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    refs = subprocess.run(
        ["git", "-C", str(tmp_path / "repo"), "for-each-ref", "--format=%(refname)"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert refs == ["refs/heads/main"]  # the host repository is left untouched
    assert out.read_text().splitlines() == [sha, "main", sha, "?? sub/", "x"]


@pytest.mark.parametrize(
    ("workflow_env", "job_env", "step_env", "allowed"),
    [
        ("", "", "", False),
        ("ACTIONS_ALLOW_UNSECURE_COMMANDS: true", "", "", True),
        ("", "ACTIONS_ALLOW_UNSECURE_COMMANDS: 'TRUE'", "", True),
        ("", "", "ACTIONS_ALLOW_UNSECURE_COMMANDS: ' true '", True),
        (
            "ACTIONS_ALLOW_UNSECURE_COMMANDS: true",
            "ACTIONS_ALLOW_UNSECURE_COMMANDS: false",
            "",
            False,
        ),
        ("", "ACTIONS_ALLOW_UNSECURE_COMMANDS: yes", "", False),
    ],
)
def test_set_env_and_add_path_follow_allow_unsecure_commands_in_any_env_layer(
    tmp_path: Path, workflow_env: str, job_env: str, step_env: str, allowed: bool
) -> None:
    wf = f"""
    on: push
    env: {{{workflow_env}}}
    jobs:
      a:
        runs-on: ubuntu-latest
        env: {{{job_env}}}
        steps:
          - env: {{{step_env}}}
            run: |
              echo "::set-env name=FOO::from set-env"
              echo "::add-path::/opt/added"
          - if: always()
            run: |
              echo "FOO=[$FOO]"
              echo "PATH=$PATH"
    """
    env, _ = _run(tmp_path, wf)
    (entry,) = _entries(env)["a"]
    second = entry.steps[1].log_tail
    assert ("FOO=[from set-env]" in second) is allowed
    assert ("PATH=/opt/added:" in second) is allowed
    assert ("`set-env` command is disabled" in entry.steps[0].log_tail) is not allowed


def test_run_env_layer_is_over_the_workflow_and_job_env(tmp_path: Path) -> None:
    """act's --env: in the env context and the step environment, over workflow and job env
    (a step's own env still wins)."""
    wf = """
    on: push
    env: {A: workflow, B: workflow}
    jobs:
      a:
        runs-on: ubuntu-latest
        env: {B: job, C: job}
        steps:
          - env: {C: step}
            run: echo "A=$A B=$B C=$C ctx=${{ env.A }}"
    """
    env, _ = _run(tmp_path, wf, env={"A": "flag", "B": "flag", "C": "flag"})
    (entry,) = _entries(env)["a"]
    assert "A=flag B=flag C=step ctx=flag" in entry.steps[0].log_tail
