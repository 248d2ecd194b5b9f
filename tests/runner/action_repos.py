"""Action repositories for the remote-action tests: bare git repositories on disk,
reached through ``github_git_url`` as ``file://ROOT/{owner}/{repo}.git``.

The JavaScript action is built as real ones are: its source uses the official toolkit
(``@actions/core`` from npm, in tests/node/node_modules) and is bundled with esbuild into
one CommonJS file for node 18 (Debian 12's node, in the default image).
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

NODE_MODULES = Path(__file__).resolve().parents[1] / "node" / "node_modules"

# One bundle; pre.js, main.js and post.js call it with their phase.
GREET_SOURCE = r"""
const core = require("@actions/core");
const fs = require("fs");
const path = require("path");

exports.run = function (phase) {
  const here = process.env.GITHUB_ACTION_PATH;
  const version = fs.readFileSync(path.join(here, "VERSION"), "utf8").trim();
  if (phase === "pre") {
    core.saveState("from_pre", "pre-" + version);
    core.info(`pre ran (${version})`);
    return;
  }
  if (phase === "post") {
    core.info(`post saw ${core.getState("from_pre")} ${core.getState("from_main")}`);
    return;
  }
  const who = core.getInput("who", { required: true });
  core.info(`main ${version}: pre state=${core.getState("from_pre")}`);
  core.info(`origin ${process.env.GITHUB_ACTION_REPOSITORY}@${process.env.GITHUB_ACTION_REF}`);
  core.info(`runner ${process.env.RUNNER_OS} ${process.env.RUNNER_ARCH} ${process.env.ImageOS}`);
  core.info(`temp ${fs.existsSync(process.env.RUNNER_TEMP)} cwd=${process.cwd() === process.env.GITHUB_WORKSPACE}`);
  core.setOutput("message", `${core.getInput("greeting")} ${who} from ${version}`);
  core.saveState("from_main", "main-" + version);
  if (core.getBooleanInput("fail")) {
    core.setFailed(`asked to fail (${version})`);
  }
};
"""

GREET_YML = """
name: greet
description: says hello, with pre and post
inputs:
  who: {description: whom, required: true}
  greeting: {description: the word, default: hello}
  fail: {description: fail in main, default: "false"}
outputs:
  message: {description: what it said}
runs:
  using: node20
  pre: dist/pre.js
  main: dist/main.js
  post: dist/post.js
"""

COMBO_YML = """
name: combo
inputs:
  name: {required: true}
outputs:
  said: {value: "${{ steps.g.outputs.message }}"}
runs:
  using: composite
  steps:
    - id: g
      uses: acme/greet@v1
      with:
        who: ${{ inputs.name }}
        greeting: hi
    - shell: bash
      run: echo "combo ran at $GITHUB_ACTION_PATH with ${{ steps.g.outputs.message }}"
"""

NEW_NODE_YML = """
name: needs-new-node
runs:
  using: node24
  main: index.js
  post: index.js
"""

LOOP_YML = """
name: loop
runs:
  using: composite
  steps:
    - uses: acme/loop@v1
"""


def bundle(source: str, out: Path) -> None:
    """Bundle ``source`` (CommonJS using npm packages) into ``out`` for node 18."""
    src = out.with_suffix(".src.js")
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text(source)
    subprocess.run(
        [str(NODE_MODULES / ".bin" / "esbuild"), str(src), "--bundle", "--platform=node",
         "--target=node18", "--format=cjs", f"--outfile={out}", "--log-level=warning"],
        env={**os.environ, "NODE_PATH": str(NODE_MODULES)}, check=True,
    )  # fmt: skip
    src.unlink()


def _git(cwd: Path, *argv: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(cwd), "-c", "user.name=t", "-c", "user.email=t@e", *argv],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return proc.stdout.strip()


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip())


def publish(remotes: Path, repo: str, commits: list[dict[str, str | bytes]],
            tags: dict[str, int] | None = None) -> list[str]:  # fmt: skip
    """Make the bare repository ``remotes/<repo>.git`` whose ``main`` branch holds
    ``commits`` (files added or replaced, in order) and ``tags`` (name: commit index);
    returns the commit shas."""
    work = remotes / "_work" / repo
    work.mkdir(parents=True)
    _git(work, "init", "-q", "-b", "main")
    shas = []
    for files in commits:
        write(work, files)
        _git(work, "add", "-A")
        _git(work, "commit", "-qm", f"commit {len(shas) + 1}")
        shas.append(_git(work, "rev-parse", "HEAD"))
    for tag, index in (tags or {}).items():
        _git(work, "tag", tag, shas[index])
    bare = remotes / f"{repo}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    return shas


def greet_files(build: Path, version: str) -> dict[str, str | bytes]:
    """The files of the greet action at ``version`` (bundled once into ``build``)."""
    index = build / "index.js"
    if not index.exists():
        bundle(GREET_SOURCE, index)
    files: dict[str, str | bytes] = {
        "action.yml": GREET_YML, "VERSION": version, "dist/index.js": index.read_bytes(),
    }  # fmt: skip
    for phase in ("pre", "main", "post"):
        files[f"dist/{phase}.js"] = f'require("./index.js").run("{phase}");\n'
    return files


def publish_all(remotes: Path, build: Path) -> dict[str, list[str]]:
    """Every action repository the tests use; returns each one's commit shas."""
    return {
        "acme/greet": publish(
            remotes, "acme/greet",
            [greet_files(build, "one"), {"VERSION": "two"}], {"v1": 0},
        ),
        "acme/combo": publish(remotes, "acme/combo", [{"action.yml": COMBO_YML}], {"v1": 0}),
        "acme/empty": publish(remotes, "acme/empty", [{"README.md": "no action here"}], {"v1": 0}),
        "acme/new": publish(remotes, "acme/new", [{"action.yml": NEW_NODE_YML, "index.js": "1"}], {"v1": 0}),
        "acme/loop": publish(remotes, "acme/loop", [{"action.yml": LOOP_YML}], {"v1": 0}),
    }  # fmt: skip


def git_url(remotes: Path) -> str:
    return f"file://{remotes}/{{owner}}/{{repo}}.git"
