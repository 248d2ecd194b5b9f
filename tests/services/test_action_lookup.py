"""``vmrunner check`` resolving remote actions (:mod:`vmrunner.services.action_lookup`):
action repositories are local bare git repositories reached through ``github_git_url`` =
``file://...``; nothing leaves this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import vmrunner
from runner.action_repos import git_url, publish
from vmrunner.config import Settings, load_settings
from vmrunner.services.action_lookup import ActionLookup
from vmrunner.services.checks import check_paths

GREET_YML = """
name: greet
inputs:
  who: {required: true}
  greeting: {default: hello}
  loud: {required: true, default: "no"}
runs: {using: node20, main: index.js}
"""
COMPOSITE_YML = """
inputs: {name: {required: true}}
runs: {using: composite, steps: [{run: echo hi, shell: bash}]}
"""
DOCKER_YML = "runs: {using: docker, image: Dockerfile}\n"
OLD_YML = "runs: {using: node10, main: index.js}\n"

WORKFLOW = """\
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: acme/greet@v1
        with: {who: me, colour: red}
      - uses: acme/greet@main
      - uses: acme/greet/sub@v1
      - uses: acme/greet@SHA
        with: {who: me}
      - uses: acme/box@v1
      - uses: acme/old@v1
"""
BROKEN = """\
on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - uses: acme/greet@nope
      - uses: acme/missing@v1
      - uses: acme/greet/nowhere@v1
"""


@pytest.fixture(scope="module")
def remotes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("remotes")
    shas = publish(
        root, "acme/greet",
        [{"action.yml": GREET_YML, "index.js": "", "sub/action.yaml": COMPOSITE_YML}],
        {"v1": 0},
    )  # fmt: skip
    publish(root, "acme/box", [{"action.yml": DOCKER_YML}], {"v1": 0})
    publish(root, "acme/old", [{"action.yml": OLD_YML}], {"v1": 0})
    return root, shas[0]


def _settings(tmp_path: Path, url: str) -> Settings:
    env = {
        "VMRUNNER_HOME": str(tmp_path / "home"), "VMRUNNER_CACHE": str(tmp_path / "cache"),
        "VMRUNNER_CONFIG": str(tmp_path / "none.toml"), "VMRUNNER_GITHUB_GIT_URL": url,
    }  # fmt: skip
    return load_settings(env=env)


def _repo(tmp_path: Path, text: str) -> Path:
    wf = tmp_path / "repo" / ".github" / "workflows"
    wf.mkdir(parents=True, exist_ok=True)
    (wf / "ci.yml").write_text(text)
    return tmp_path / "repo"


def _found(repo: Path, lookup: ActionLookup) -> list[tuple[int, str, str]]:
    return [(d.line, str(d.severity), d.message) for d in check_paths([], repo, lookup=lookup)]


def test_without_fetching_a_missing_action_is_one_note_and_nothing_is_written(
    tmp_path: Path, remotes: tuple[Path, str]
) -> None:
    settings = _settings(tmp_path, git_url(remotes[0]))
    repo = _repo(tmp_path, WORKFLOW.replace("SHA", remotes[1]))
    found = _found(repo, ActionLookup(settings))
    assert [f[1] for f in found] == ["note"] * 5  # greet@v1, greet@main, greet@sha, box, old
    assert found[0] == (
        7, "note",
        "not checked: acme/greet@v1 is not in the action cache (--fetch-actions fetches it)",
    )  # fmt: skip
    assert not (tmp_path / "cache").exists()


def test_fetched_actions_are_checked_then_read_from_the_cache(
    tmp_path: Path, remotes: tuple[Path, str]
) -> None:
    settings = _settings(tmp_path, git_url(remotes[0]))
    repo = _repo(tmp_path, WORKFLOW.replace("SHA", remotes[1]))
    fetched = _found(repo, ActionLookup(settings, fetch=True))
    valid = "'who', 'greeting', 'loud'"
    assert fetched == [
        (8, "warning", f"Unexpected input(s) 'colour', valid inputs are [{valid}] (acme/greet@v1)"),
        (9, "error", "The action 'acme/greet@main' needs its required input 'who' (give it under with:)"),
        (10, "error", "The action 'acme/greet/sub@v1' needs its required input 'name' (give it under with:)"),
        (13, "warning", "The step uses the Docker action 'acme/box@v1': vmrunner will not run it "
                        "(container actions are not supported yet)"),
        (14, "error", "The action 'acme/old@v1' has runs.using: node10; vmrunner runs composite "
                      "actions and JavaScript actions (node12, node16, node20, node24)"),
    ]  # fmt: skip
    # now in the cache: the same without fetching, even with the repositories gone
    offline = _settings(tmp_path, "file:///nonexistent/{owner}/{repo}.git")
    assert _found(repo, ActionLookup(offline)) == fetched


def test_what_fetching_cannot_find_is_an_error_naming_the_action(
    tmp_path: Path, remotes: tuple[Path, str]
) -> None:
    settings = _settings(tmp_path, git_url(remotes[0]))
    found = _found(_repo(tmp_path, BROKEN), ActionLookup(settings, fetch=True))
    assert [(line, sev) for line, sev, _ in found] == [(6, "error"), (7, "error"), (8, "error")]
    assert "'acme/greet@nope'" in found[0][2] and "has no ref or commit nope" in found[0][2]
    assert "'acme/missing@v1'" in found[1][2] and "no repository acme/missing" in found[1][2]
    assert found[2][2].startswith(
        "The action 'acme/greet/nowhere@v1' has no action.yml or action.yaml in 'nowhere'"
    )


def test_an_unreachable_server_is_a_note_not_an_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "nosuchscheme://example.invalid/{owner}/{repo}.git")
    found = _found(_repo(tmp_path, BROKEN), ActionLookup(settings, fetch=True))
    assert [sev for _, sev, _ in found] == ["note"] * 3  # greet@nope, missing@v1, greet@v1
    assert found[0][2].startswith("not checked: acme/greet@nope cannot be fetched:")


def test_an_actions_directory_comes_first(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "file:///nonexistent/{owner}/{repo}.git")
    action = tmp_path / "home" / "actions" / "acme" / "local@v1"
    action.mkdir(parents=True)
    (action / "action.yml").write_text(GREET_YML)
    text = WORKFLOW.split("      - uses: acme/greet@main")[0].replace("acme/greet", "acme/local")
    found = _found(_repo(tmp_path, text), ActionLookup(settings))
    assert [(line, sev) for line, sev, _ in found] == [(8, "warning")]


def test_the_cli_fetches_only_when_asked(tmp_path: Path, remotes: tuple[Path, str]) -> None:
    repo = _repo(tmp_path, WORKFLOW.replace("SHA", remotes[1]))
    env = {
        **os.environ, "VMRUNNER_HOME": str(tmp_path / "home"),
        "VMRUNNER_CACHE": str(tmp_path / "cache"), "VMRUNNER_CONFIG": str(tmp_path / "no.toml"),
        "VMRUNNER_GITHUB_GIT_URL": git_url(remotes[0]),
    }  # fmt: skip
    proc = vmrunner(["check"], env, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 5 and all(line.endswith("(note)") for line in lines), lines
    proc = vmrunner(["check", "--fetch-actions"], env, cwd=repo)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == (
        f"{repo}/.github/workflows/ci.yml:8:25: Unexpected input(s) 'colour', valid inputs are "
        "['who', 'greeting', 'loud'] (acme/greet@v1) (warning)"
    )
    assert sum("(warning)" in line for line in lines) == 2 and len(lines) == 5


# Checks a workflow whose remote actions are in the cache (or not), without fetching, and
# prints the heavy modules that got loaded.
_PROBE = """
import sys
from pathlib import Path
from vmrunner.services.checks import check_paths
found = check_paths([Path(sys.argv[1])], Path(sys.argv[2]))
print(sorted({str(d.severity) for d in found}))
heavy = ("vmrunner.vm", "vmrunner.store", "vmrunner.runner.engine", "vmrunner.runner.steps",
         "vmrunner.procs", "sqlalchemy", "asyncio", "subprocess")
print(sorted(m for m in sys.modules if m.startswith(heavy)))
"""


def test_check_without_fetching_starts_no_process_and_loads_no_vm_or_store_code(
    tmp_path: Path, remotes: tuple[Path, str]
) -> None:
    settings = _settings(tmp_path, git_url(remotes[0]))
    repo = _repo(tmp_path, WORKFLOW.replace("SHA", remotes[1]))
    env = {
        **os.environ, "VMRUNNER_HOME": str(tmp_path / "home"),
        "VMRUNNER_CACHE": str(tmp_path / "cache"), "VMRUNNER_CONFIG": str(tmp_path / "no.toml"),
    }  # fmt: skip
    argv = [sys.executable, "-c", _PROBE, str(repo / ".github/workflows/ci.yml"), str(repo)]
    outputs = []
    for fetch_first in (False, True):  # nothing cached; every action cached
        if fetch_first:
            check_paths([], repo, lookup=ActionLookup(settings, fetch=True))
        proc = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout.splitlines())
    assert outputs == [["['note']", "[]"], ["['error', 'warning']", "[]"]]


def test_a_mirror_without_a_tree_is_read_with_git_read_only(
    tmp_path: Path, remotes: tuple[Path, str]
) -> None:
    """A repository fetched into the cache (by the server, say) but never run from."""
    from vmrunner.github.repos import RepoCache

    settings = _settings(tmp_path, git_url(remotes[0]))
    RepoCache(settings.cache_dir, settings.github_git_url).fetch("acme/greet", "v1")
    repo = _repo(tmp_path, WORKFLOW.split("      - uses: acme/greet@main")[0])
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "cache").rglob("*"))
    found = _found(repo, ActionLookup(settings))
    assert [(line, sev) for line, sev, _ in found] == [(8, "warning")]
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "cache").rglob("*")) == before
