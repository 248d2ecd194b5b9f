"""The real npm toolkit clients in real VMs (TCG), through the real CLI, against the
run's own services: a node action bundled with esbuild from ``@actions/artifact`` and
``@actions/cache`` (as upload-artifact v4 and actions/cache v4 are) uploads a directory
in one job and downloads it in another job of the same run; it saves a cache in one
``vmrunner run`` and restores it in the next by a restore-key. The same two runs carry
``RUNNER_TOOL_CACHE`` across VMs (``tool_cache`` on): what the first run's job put
there, the second run's job sees.

Three VM boots in all: run 1 has jobs ``up`` and ``down`` (``needs: up``), run 2 has
``again``. The cache directory is the test's own (the image and boot snapshots linked
in from the shared one), so no other run's caches or tools are seen.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import git_repo, vmrunner
from runner.action_repos import bundle, git_url, publish
from vmrunner.config import load_settings
from vmrunner.results import validate_result

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("debian_image")]

# One bundle with both clients; the ``op`` input picks what it does.
TOOLKIT_SOURCE = r"""
const core = require("@actions/core");
const cache = require("@actions/cache");
const { DefaultArtifactClient } = require("@actions/artifact");
const fs = require("fs");
const path = require("path");

function walk(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]);
}
const lines = (name) => core.getInput(name).split("\n").map((s) => s.trim()).filter(Boolean);

async function run() {
  const ops = core.getInput("op", { required: true }).split(",");
  const op = ops[0];
  const where = path.resolve(process.env.GITHUB_WORKSPACE, core.getInput("path"));
  const client = new DefaultArtifactClient();
  const said = [];  // printed last: the step's log tail keeps the end of its output
  if (ops.includes("upload")) {
    const res = await client.uploadArtifact(core.getInput("name"), walk(where), where, { retentionDays: 1 });
    said.push(`uploaded id=${res.id} size=${res.size} digest=${res.digest}`);
  }
  if (ops.includes("save")) {
    const id = await cache.saveCache(lines("cache-path"), core.getInput("key"));
    if (id <= 0) throw new Error(`the cache was not saved (${id})`);
    said.push(`saved id=${id}`);
  }
  said.forEach((line) => core.info(line));
  if (op === "download") {
    const { artifact } = await client.getArtifact(core.getInput("name"));
    const res = await client.downloadArtifact(artifact.id, { path: where, expectedHash: artifact.digest });
    core.info(`downloaded ${artifact.name} mismatch=${res.digestMismatch}`);
  } else if (op === "restore") {
    const matched = await cache.restoreCache(lines("cache-path"), core.getInput("key"), lines("restore-keys"));
    core.info(`restored matched=${matched}`);
    core.setOutput("matched", matched || "");
  }
}
run().catch((e) => core.setFailed(`${core.getInput("op")}: ${e.message}`));
"""

ACTION_YML = """
name: toolkit
description: the official toolkit clients (artifact and cache)
inputs:
  op: {required: true}
  name: {default: ""}
  path: {default: "."}
  cache-path: {default: ""}
  key: {default: ""}
  restore-keys: {default: ""}
outputs:
  matched: {description: the key a restore matched}
runs:
  using: node20
  main: dist/index.js
"""

RUN_ONE = """
on: push
jobs:
  up:
    runs-on: ubuntu-latest
    steps:
      - run: |
          mkdir -p out/sub deps
          head -c 300000 /dev/urandom > out/data.bin
          echo "a note" > out/sub/note.txt
          head -c 200000 /dev/urandom > deps/lib.bin
          echo "up-digest $(sha256sum out/data.bin | cut -d' ' -f1)"
          echo "deps-digest $(sha256sum deps/lib.bin | cut -d' ' -f1)"
          echo "seen-tools [$(ls "$RUNNER_TOOL_CACHE")] at $RUNNER_TOOL_CACHE $AGENT_TOOLSDIRECTORY"
          mkdir -p "$RUNNER_TOOL_CACHE/mytool/1.2.3/x64"
          echo "tool one" > "$RUNNER_TOOL_CACHE/mytool/1.2.3/x64/mytool"
          touch "$RUNNER_TOOL_CACHE/mytool/1.2.3/x64.complete"
      # one node process for both (each start of the 5 MB bundle costs tens of seconds
      # under TCG): the artifact upload, then the cache save
      - uses: acme/toolkit@v1
        with: {op: "upload,save", name: bundle, path: out, key: deps-linux-one, cache-path: deps}
  down:
    needs: up
    runs-on: ubuntu-latest
    steps:
      - uses: acme/toolkit@v1
        with: {op: download, name: bundle, path: got}
      - run: echo "down-digest $(sha256sum got/data.bin | cut -d' ' -f1) note=$(cat got/sub/note.txt)"
"""

RUN_TWO = """
on: push
jobs:
  again:
    runs-on: ubuntu-latest
    steps:
      - id: c
        uses: acme/toolkit@v1
        with:
          op: restore
          key: deps-linux-two
          restore-keys: |
            deps-linux-
            deps-
          cache-path: deps
      - run: echo "matched ${{ steps.c.outputs.matched }} digest $(sha256sum deps/lib.bin | cut -d' ' -f1)"
      - run: echo "tool says $(cat "$RUNNER_TOOL_CACHE/mytool/1.2.3/x64/mytool")"
"""


def _own_cache(tmp: Path) -> Path:
    """A cache directory of the test's own, with the shared image and snapshots in it."""
    shared = load_settings(env={k: v for k, v in os.environ.items() if k != "VMRUNNER_HOME"})
    cache = tmp / "cache"
    cache.mkdir()
    for name in ("images", "snapshots"):
        (shared.cache_dir / name).mkdir(parents=True, exist_ok=True)
        (cache / name).symlink_to(shared.cache_dir / name)
    return cache


def _run(repo: Path, env: dict[str, str], workflow: str, out: Path) -> dict[str, Any]:
    proc = vmrunner(["run", "--accel", "tcg", "-W", workflow, "--json", str(out)], env,
                    timeout=900, cwd=repo)  # fmt: skip
    assert out.exists(), proc.stderr.decode()[-3000:]
    doc: dict[str, Any] = json.loads(out.read_text())
    assert validate_result(doc) == []
    return doc


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The two runs' result documents, and what the test needs to look further."""
    tmp = tmp_path_factory.mktemp("toolkit-vm")
    index = tmp / "build" / "index.js"
    bundle(TOOLKIT_SOURCE, index)
    files: dict[str, str | bytes] = {"action.yml": ACTION_YML, "dist/index.js": index.read_bytes()}
    publish(tmp / "remotes", "acme/toolkit", [files], {"v1": 0})
    repo = git_repo(tmp / "repo", {".github/workflows/one.yml": RUN_ONE,
                                    ".github/workflows/two.yml": RUN_TWO})  # fmt: skip
    env = {**os.environ, "VMRUNNER_HOME": str(tmp / "state"), "VMRUNNER_CACHE": str(_own_cache(tmp)),
           "VMRUNNER_GITHUB_GIT_URL": git_url(tmp / "remotes"), "VMRUNNER_TOOL_CACHE": "true"}  # fmt: skip
    one = _run(repo, env, ".github/workflows/one.yml", tmp / "one.json")
    two = _run(repo, env, ".github/workflows/two.yml", tmp / "two.json")
    return {"one": one, "two": two, "env": env, "tmp": tmp}


def _logs(doc: dict[str, Any], job: str) -> str:
    found = next(j for j in doc["jobs"] if j["id"] == job)
    assert found["status"] == "success", json.dumps(found["steps"], indent=1)[-4000:]
    return "\n".join(s["log_tail"] for s in found["steps"])


def _word(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    assert found is not None, f"{pattern!r} not in:\n{text[-3000:]}"
    return found.group(1)


def test_artifact_uploaded_in_one_job_is_downloaded_in_another(runs: dict[str, Any]) -> None:
    up, down = _logs(runs["one"], "up"), _logs(runs["one"], "down")
    sent = _word(r"up-digest ([0-9a-f]{64})", up)
    assert _word(r"down-digest ([0-9a-f]{64})", down) == sent
    assert "note=a note" in down and "mismatch=false" in down
    listed = runs["one"]["artifacts"]
    assert [a["name"] for a in listed] == ["bundle"]
    assert _word(r"digest=([0-9a-f]{64})", up) == listed[0]["digest"].removeprefix("sha256:")
    dest = runs["tmp"] / "downloaded"
    proc = vmrunner(["runs", "artifacts", str(runs["one"]["id"]), "--download", str(dest)],
                    runs["env"], timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    assert hashlib.sha256((dest / "bundle" / "data.bin").read_bytes()).hexdigest() == sent
    assert (dest / "bundle" / "sub" / "note.txt").read_text() == "a note\n"


def test_cache_saved_in_one_run_is_restored_in_the_next(runs: dict[str, Any]) -> None:
    saved = _word(r"deps-digest ([0-9a-f]{64})", _logs(runs["one"], "up"))
    assert "saved id=" in _logs(runs["one"], "up")
    again = _logs(runs["two"], "again")
    assert _word(r"matched (\S+) digest", again) == "deps-linux-one"
    assert _word(r"matched \S+ digest ([0-9a-f]{64})", again) == saved


def test_tool_cache_persists_across_runs(runs: dict[str, Any]) -> None:
    up = _logs(runs["one"], "up")
    assert "seen-tools [] at /opt/hostedtoolcache /opt/hostedtoolcache" in up
    assert "tool says tool one" in _logs(runs["two"], "again")
