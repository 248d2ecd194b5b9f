"""Masking, output handling, labels and contexts: pure tables."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from vmrunner.errors import UserInputError
from vmrunner.runner.context import (
    GuestLayout,
    RunInfo,
    default_env,
    git_info,
    github_context,
    make_event,
    runner_context,
)
from vmrunner.runner.engine import aggregate, image_for
from vmrunner.runner.output import NullReporter, OutputSink, mask_tree
from vmrunner.workflow.masking import Masker


@pytest.mark.parametrize(
    ("values", "text", "expected"),
    [
        (["abc"], "xabcx abc", "x***x ***"),
        (["ab", "abcd"], "abcd ab", "*** ***"),
        (["line1\nline2"], "line2 and line1", "*** and ***"),
        ([" ", ""], "a b", "a b"),
    ],
)
def test_masker(values: list[str], text: str, expected: str) -> None:
    assert Masker(values).mask_text(text) == expected


def test_mask_tree_masks_values_never_keys() -> None:
    assert mask_tree(Masker(["s"]), {"s": ["s", 1, {"x": "as", "status": "success"}]}) == {
        "s": ["***", 1, {"x": "a***", "status": "***ucce***"}]
    }


def test_output_sink_acts_on_commands_and_masks() -> None:
    masker, log = Masker(), []  # type: ignore[var-annotated]
    sink = OutputSink("job", masker, NullReporter(), log)
    sink.stdout(
        b"::add-mask::pw\nuse pw here\n::notice file=f,line=2::note pw\n::set-output name=o::v\npart"
    )
    sink.stderr(b"::stop-commands::t1\n::error::ignored\n::t1::\n::bogus-cmd::x\n")
    sink.close()
    assert "use *** here" in log
    assert "::error::ignored" in log
    assert "::bogus-cmd::x" in log
    assert "part" in log
    assert sink.annotations[0].message == "note ***" and sink.annotations[0].line == 2
    assert sink.outputs == {"o": "v"}


def test_output_sink_flags_invalid_commands() -> None:
    sink = OutputSink("job", Masker(), NullReporter(), [])
    sink.stdout(b"::set-env name=A::b\n")
    assert sink.invalid


@pytest.mark.parametrize(
    ("runs_on", "image"),
    [("ubuntu-latest", "debian"), (["self-hosted", "linux"], "debian"),
     ({"labels": ["ubuntu-22.04"]}, "debian"), ("big-box", "custom")],
)  # fmt: skip
def test_labels_map_to_images(runs_on: object, image: str) -> None:
    assert image_for(runs_on, {"big-box": "custom"}) == image


def test_an_unknown_label_is_a_clear_error() -> None:
    with pytest.raises(UserInputError, match="'windows-latest' maps to no image"):
        image_for("windows-latest", {})


@pytest.mark.parametrize(
    ("results", "expected"),
    [(["success", "failure"], "failure"), (["success", "cancelled"], "cancelled"),
     (["skipped", "skipped"], "skipped"), (["success", "skipped"], "success")],
)  # fmt: skip
def test_aggregate(results: list[str], expected: str) -> None:
    assert aggregate(results) == expected


def test_github_context_for_a_push_and_a_pull_request(tmp_path: Path) -> None:
    repo = tmp_path / "proj"
    repo.mkdir()
    (repo / "a.txt").write_text("a")
    for argv in (["init", "-q", "-b", "feature/x"], ["add", "-A"],
                 ["-c", "user.name=Ann", "-c", "user.email=a@e", "commit", "-qm", "c"],
                 ["remote", "add", "origin", "git@github.com:acme/proj.git"]):  # fmt: skip
        subprocess.run(["git", "-C", str(repo), *argv], check=True)
    git = git_info(repo)
    assert git.repository == "acme/proj" and git.branch == "feature/x"
    push = make_event(git, "push", None, {})
    assert push.changed == ("a.txt",)
    info = RunInfo("99", 3, "CI", ".github/workflows/ci.yml", git, push, GuestLayout())
    gh = github_context(info, "build")
    assert (gh["ref"], gh["ref_name"], gh["ref_type"], gh["sha"]) == (
        "refs/heads/feature/x", "feature/x", "branch", git.sha)  # fmt: skip
    assert (gh["repository_owner"], gh["run_id"], gh["run_number"], gh["job"]) == (
        "acme",
        "99",
        "3",
        "build",
    )
    assert gh["workspace"] == "/home/runner/work/proj/proj"
    assert gh["event"]["ref"] == "refs/heads/feature/x"
    env = default_env(gh, runner_context(GuestLayout()))
    assert env["GITHUB_SHA"] == git.sha and env["RUNNER_OS"] == "Linux" and env["CI"] == "true"
    pr = make_event(
        git, "pull_request", {"number": 5, "pull_request": {"base": {"ref": "main"}}}, {}
    )
    gh = github_context(RunInfo("1", 1, "CI", "ci.yml", git, pr), "j")
    assert (gh["ref"], gh["base_ref"], gh["head_ref"]) == ("refs/pull/5/merge", "main", "feature/x")
    dispatch = make_event(git, "workflow_dispatch", {"inputs": {"a": "1"}}, {"b": "2"})
    assert dispatch.inputs == {"a": "1", "b": "2"}


def test_workflow_dispatch_inputs_get_defaults_and_types(tmp_path: Path) -> None:
    from vmrunner.runner.context import EventSpec
    from vmrunner.services.workflows import dispatch_inputs
    from vmrunner.workflow.check import load_workflow

    text = (
        "on:\n  workflow_dispatch:\n    inputs:\n      flag: {type: boolean, default: false}\n"
        "      n: {type: number, default: 3}\n      s: {type: string, default: hi}\n"
        "jobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo\n"
    )
    workflow = load_workflow(text, "w.yml")
    event = EventSpec(
        "workflow_dispatch", "sha", "refs/heads/main", inputs={"flag": "true", "n": "5"}
    )
    assert dispatch_inputs(workflow, event) == {"flag": True, "n": 5, "s": "hi"}


def test_output_sink_masks_secrets_split_across_chunks_and_multiline_ones() -> None:
    masker, log = Masker(["tok3n", "first line\nsecond line"]), []  # type: ignore[var-annotated]
    sink = OutputSink("job", masker, NullReporter(), log)
    for chunk in (b"a to", b"k3n", b"tok3n b\nsecond ", b"line here\nfirst line\n"):
        sink.stdout(chunk)
    sink.close()
    assert log == ["a *** b", "*** here", "***"]
