"""GitHub's own TypeScript workflow parser (``@actions/workflow-parser``), run with node.

The parser is installed by scripts/bootstrap.sh (``npm ci --prefix tests/node``) and
driven by ``tests/node/parse-workflows.mjs``: one node process per batch, workflows in
and errors out as JSON lines. A missing node or node_modules is a failure (bootstrap
installs both), never a skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
DRIVER = NODE_DIR / "parse-workflows.mjs"
PACKAGE = NODE_DIR / "node_modules" / "@actions" / "workflow-parser"
NPM_SCHEMA = PACKAGE / "dist" / "workflow-v1.0.min.json"


@dataclass(frozen=True)
class Request:
    """One workflow to parse: its file name, its text, the reusable workflows it may call
    (reference -> text), and whether to look at them (each reference must then be in
    ``called``, or it is reported missing)."""

    name: str
    content: str
    called: dict[str, str] = field(default_factory=dict)
    fetch: bool = False


@dataclass(frozen=True)
class GithubError:
    """One error GitHub's parser reported; ``line`` is None when it gave no position."""

    file: str | None
    line: int | None
    col: int | None
    message: str


def github_parse(requests: list[Request], timeout: float = 300) -> list[list[GithubError]]:
    """GitHub's errors for each request (an empty list: GitHub accepts it), in order."""
    node = shutil.which("node")
    assert node is not None, "node is missing: run scripts/bootstrap.sh"
    assert PACKAGE.is_dir(), f"{PACKAGE} is missing: run scripts/bootstrap.sh (npm ci)"
    lines = [
        json.dumps(
            {"id": i, "name": r.name, "content": r.content, "called": r.called, "fetch": r.fetch}
        )
        for i, r in enumerate(requests)
    ]
    done = subprocess.run(
        [node, str(DRIVER)],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=NODE_DIR,
    )
    assert done.returncode == 0, done.stderr
    replies = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert [r["id"] for r in replies] == list(range(len(requests))), done.stderr
    crashed = [r["crash"] for r in replies if "crash" in r]
    assert not crashed, crashed[0]
    return [[GithubError(**e) for e in r["errors"]] for r in replies]
