"""The tool-cache store's pure rules (eviction, names) and its host side under
concurrency: several processes saving at once never corrupt it. The guest side runs in
tests/toolkit/test_toolkit_clients_vm.py (real VMs)."""

from __future__ import annotations

import asyncio
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.config import load_settings
from vmrunner.errors import ConfigError
from vmrunner.runner.context import GuestLayout, RunInfo, git_info, make_event
from vmrunner.runner.engine import RunEnv, WorkflowExecution
from vmrunner.runner.output import NullReporter
from vmrunner.runner.tool_cache import (
    Kept,
    ToolCache,
    ToolStore,
    evict,
    from_settings,
    tools_env,
    valid_version,
)
from vmrunner.workflow.check import load_workflow
from vmrunner.workflow.masking import Masker

from .fakes import HostFactory
from .test_engine import _git_repo

kept_lists = st.lists(
    st.builds(
        Kept, st.text("abc/", min_size=1, max_size=4), st.integers(0, 100), st.floats(0, 1000)
    ),  # fmt: skip
    max_size=10,
    unique_by=lambda k: k.name,
)


@given(kept_lists, st.integers(0, 500))
def test_evict_oldest_first_and_no_more_than_needed(kept: list[Kept], limit: int) -> None:
    gone = evict(kept, limit)
    rest = [k for k in kept if k.name not in gone]
    assert sum(k.size for k in rest) <= limit or not rest
    if gone:
        by_name = {k.name: k for k in kept}
        newest_gone = max((by_name[n].saved_at, n) for n in gone)
        assert all((k.saved_at, k.name) > newest_gone for k in rest)
        assert sum(k.size for k in rest) + by_name[gone[-1]].size > limit


def test_evict_table() -> None:
    kept = [Kept("a/1", 50, 3.0), Kept("b/1", 50, 1.0), Kept("c/1", 50, 2.0)]
    assert evict(kept, 150) == []
    assert evict(kept, 100) == ["b/1"]
    assert evict(kept, 60) == ["b/1", "c/1"]
    assert evict(kept, 0) == ["b/1", "c/1", "a/1"]


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("Python/3.12.1", True), ("node/20.11.0", True), ("go/1.22.0+rc1", True),
        ("Python", False), ("a/b/c", False), ("../x", False), ("x/..", False),
        ("x/.hidden", False), (".x/1", False), ("x/", False), ("/x", False),
        ("x/1 2", False), ("x/1\n", False), ("", False),
    ],
)  # fmt: skip
def test_valid_version(name: str, ok: bool) -> None:
    assert valid_version(name) is ok


def test_env_and_settings(tmp_path: Path) -> None:
    assert tools_env(GuestLayout()) == {
        "RUNNER_TOOL_CACHE": "/opt/hostedtoolcache", "AGENT_TOOLSDIRECTORY": "/opt/hostedtoolcache",
    }  # fmt: skip
    base = {"VMRUNNER_HOME": str(tmp_path / "s"), "VMRUNNER_CACHE": str(tmp_path / "c"),
            "VMRUNNER_CONFIG": str(tmp_path / "none.toml")}  # fmt: skip
    assert from_settings(load_settings(env=base)) is None  # off by default
    on = from_settings(load_settings(env={**base, "VMRUNNER_TOOL_CACHE": "true",
                                          "VMRUNNER_TOOL_CACHE_MAX_MIB": "3"}))  # fmt: skip
    assert on is not None and on.limit == 3 << 20 and on.root == tmp_path / "c" / "tool-cache"
    with pytest.raises(ConfigError, match="tool_cache must be true or false"):
        load_settings(env={**base, "VMRUNNER_TOOL_CACHE": "maybe"})
    with pytest.raises(ConfigError, match="tool_cache_max_mib must be at least 1"):
        load_settings(env={**base, "VMRUNNER_TOOL_CACHE_MAX_MIB": "0"})


def _stage(store: ToolStore, versions: dict[str, bytes]) -> Path:
    staged = store.staging()
    for name, data in versions.items():
        (staged / name / "x64").mkdir(parents=True)
        (staged / name / "x64" / "bin").write_bytes(data)
        (staged / name / "x64.complete").touch()
    return staged


def test_adopt_keeps_the_first_and_evicts_the_oldest(tmp_path: Path) -> None:
    store = ToolStore(tmp_path / "debian", limit=250)
    assert store.adopt(_stage(store, {"py/1": b"a" * 100}), ["py/1"], now=1.0) == ["py/1"]
    assert store.adopt(_stage(store, {"py/1": b"b" * 100}), ["py/1"], now=2.0) == []
    assert (store.entries / "py/1/x64/bin").read_bytes() == b"a" * 100  # the first stays
    store.adopt(_stage(store, {"go/1": b"c" * 100}), ["go/1"], now=3.0)
    assert store.names() == ["go/1", "py/1"]
    assert store.adopt(_stage(store, {"go/2": b"d" * 100}), ["go/2"], now=4.0) == ["go/2"]
    assert store.names() == ["go/1", "go/2"]  # py/1, the oldest, went
    assert not (store.entries / "py").exists()
    too_big = _stage(store, {"big/1": b"e" * 300})
    assert store.adopt(too_big, ["big/1"], now=5.0) == []  # alone past the limit
    assert store.names() == ["go/1", "go/2"]


def _save_in_process(root: str, worker: int) -> list[str]:
    store = ToolStore(Path(root), limit=10**9)
    names = [f"common/{i}" for i in range(5)] + [f"own{worker}/1"]
    staged = _stage(store, {n: f"{n} from {worker}".encode() * 1000 for n in names})
    kept = store.adopt(staged, names)
    shutil.rmtree(staged)  # as ToolCache.save does
    return kept


def test_concurrent_saves_do_not_corrupt_the_store(tmp_path: Path) -> None:
    root = tmp_path / "debian"
    with ProcessPoolExecutor(4) as pool:
        results = list(pool.map(_save_in_process, [str(root)] * 8, range(8)))
    store = ToolStore(root, limit=10**9)
    shared = [f"common/{i}" for i in range(5)]
    assert store.names() == sorted(shared + [f"own{w}/1" for w in range(8)])
    for name in shared:  # each kept once, whole, from one of the savers
        assert sum(name in r for r in results) == 1
        data = (root / "entries" / name / "x64" / "bin").read_bytes()
        assert data in {f"{name} from {w}".encode() * 1000 for w in range(8)}
        assert (root / "entries" / name / "x64.complete").is_file()
    assert not list(root.glob(".tmp-*"))


FORK_PR = {
    "action": "opened",
    "pull_request": {"head": {"repo": {"full_name": "mallory/demo"}, "ref": "x", "sha": "0" * 40},
                     "base": {"repo": {"full_name": "octo/demo"}, "ref": "main", "sha": "0" * 40}},
}  # fmt: skip
PLANTS_A_TOOL = """
on: [push, pull_request]
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: |
          mkdir -p "$RUNNER_TOOL_CACHE/python/3.12.0/x64/bin"
          echo planted > "$RUNNER_TOOL_CACHE/python/3.12.0/x64/bin/python3"
          touch "$RUNNER_TOOL_CACHE/python/3.12.0/x64.complete"
"""


@pytest.mark.parametrize(("event", "payload", "kept"), [
    ("push", None, ["python/3.12.0"]),
    ("pull_request", FORK_PR, []),  # shared by every later run of the image: not from outside
])  # fmt: skip
def test_a_tool_is_kept_from_a_push_but_never_from_a_forks_pull_request(
    tmp_path: Path, event: str, payload: dict[str, Any] | None, kept: list[str]
) -> None:
    git = git_info(_git_repo(tmp_path / "repo"))
    layout = GuestLayout(home=str(tmp_path / "guest"), tool_cache=str(tmp_path / "tools"))
    info = RunInfo("42", 7, "wf", "wf.yml", git, make_event(git, event, payload, {}), layout)
    env = RunEnv(info, HostFactory(), NullReporter(), Masker(), tmp_path / "run")
    env.tool_cache = ToolCache(tmp_path / "store", 10**9)
    summaries = asyncio.run(
        WorkflowExecution(env, load_workflow(PLANTS_A_TOOL, "wf.yml"), "wf.yml").run()
    )
    assert [s.result for s in summaries.values()] == ["success"]
    stores = list((tmp_path / "store").iterdir()) if (tmp_path / "store").exists() else []
    assert sorted(n for d in stores for n in ToolStore(d, 10**9).names()) == kept
