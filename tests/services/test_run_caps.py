"""Caps a pull request cannot raise, through the service layer (fake guest on the host):
concurrency groups are per repository (one repository cannot cancel another's run), and
the ``max_parallel`` setting bounds a job's matrix whatever the workflow says."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from runner.fakes import HostFactory
from vmrunner.config import Settings, load_settings
from vmrunner.services.runrequest import RunRequest
from vmrunner.services.workflows import RunOutcome, RunSlot, run_workflows
from vmrunner.store.concurrency import ConcurrencyStore
from vmrunner.store.engine import open_store

GROUPED = """
on: push
concurrency:
  group: ci
  cancel-in-progress: true
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - run: {step}
"""


def _repo(root: Path, workflow: str) -> Path:
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "ci.yml").write_text(workflow)
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "c"]):  # fmt: skip
        subprocess.run(["git", "-C", str(root), *argv], check=True, capture_output=True)
    return root


def _settings(tmp_path: Path, **extra: str) -> Settings:
    return load_settings(env={**os.environ, "VMRUNNER_HOME": str(tmp_path / "state"), **extra})


async def _run(
    settings: Settings, repo: Path, run_id: str, store: ConcurrencyStore | None, tmp_path: Path
) -> RunOutcome:
    run_dir = tmp_path / f"run-{run_id}"
    run_dir.mkdir()
    slot = RunSlot(run_id, run_dir, store)
    return await run_workflows(settings, RunRequest(repo), slot, factory=HostFactory())


def test_a_group_of_the_same_name_in_another_repository_is_another_group(tmp_path: Path) -> None:
    go, started = tmp_path / "GO", tmp_path / "A-started"
    wait = (
        f"touch {started}; for i in $(seq 600); do [ -f {go} ] && exit 0; sleep 0.1; done; exit 1"
    )
    repo_a = _repo(tmp_path / "a" / "app", GROUPED.format(step=f"'{wait}'"))
    repo_b = _repo(tmp_path / "b" / "app", GROUPED.format(step=f"touch {go}"))  # same dir name
    settings = _settings(tmp_path)
    store = ConcurrencyStore(open_store(f"sqlite:///{tmp_path}/conc.db"))

    async def scenario() -> tuple[RunOutcome, RunOutcome]:
        first = asyncio.ensure_future(_run(settings, repo_a, "1", store, tmp_path))
        while not started.exists():
            await asyncio.sleep(0.05)
        second = await _run(settings, repo_b, "2", store, tmp_path)
        return await first, second

    first, second = asyncio.run(scenario())
    # B's cancel-in-progress did not cancel A's run: A ran on and saw B's file
    assert first.document["status"] == "success", first.document
    assert second.document["status"] == "success", second.document


MATRIX = """
on: push
jobs:
  m:
    runs-on: ubuntu-latest
    strategy:
      max-parallel: 50
      matrix:
        i: [1, 2, 3, 4, 5, 6]
    steps:
      - run: |
          mkdir -p {d}/running {d}/done
          touch {d}/running/${{{{ matrix.i }}}}
          ls {d}/running | wc -l >> {d}/counts
          sleep 0.5
          rm {d}/running/${{{{ matrix.i }}}}
          touch {d}/done/${{{{ matrix.i }}}}
"""


def test_the_max_parallel_setting_caps_a_workflows_matrix(tmp_path: Path) -> None:
    d = tmp_path / "trace"
    repo = _repo(tmp_path / "repo", MATRIX.format(d=d))
    cfg = tmp_path / "config.toml"
    cfg.write_text("max_parallel = 2\n")
    settings = _settings(tmp_path, VMRUNNER_CONFIG=str(cfg))
    outcome = asyncio.run(_run(settings, repo, "1", None, tmp_path))
    assert outcome.document["status"] == "success", outcome.document
    assert sorted(p.name for p in (d / "done").iterdir()) == [str(i) for i in range(1, 7)]
    assert max(int(c) for c in (d / "counts").read_text().split()) <= 2
