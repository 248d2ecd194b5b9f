"""Test helpers for the GitHub runner service: a local "GitHub" repository (a bare git
repository reached through ``github_git_url`` with ``file://``) and webhook payloads
taken from GitHub's own examples (npm ``@octokit/webhooks-examples``) with the
repository, refs and commits replaced by the local repository's."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from gitsource import Source, url_template

EXAMPLES = (Path(__file__).resolve().parents[1] / "node" / "node_modules" / "@octokit"
            / "webhooks-examples" / "api.github.com" / "index.json")  # fmt: skip
ZERO = "0" * 40
PASS = """
name: pass
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: echo "built in $(uname -r)"
"""
FAIL = """
name: fail
on: push
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - name: the failing step
        run: exit 3
"""
"""Two workflows every test of the service uses: one passes, one fails in a named step."""


def wait_for(what: str, check: Callable[[], Any], timeout: float = 240.0) -> Any:
    """``check()``'s first true value, asked every 0.25 s; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@cache
def _examples() -> dict[str, list[dict[str, Any]]]:
    return {e["name"]: e["examples"] for e in json.loads(EXAMPLES.read_text())}


def example(event: str, action: str | None = None, ref_prefix: str | None = None) -> dict[str, Any]:
    """A copy of GitHub's first example of ``event`` (with ``action``; for push, whose
    ref starts with ``ref_prefix``)."""
    for found in _examples()[event]:
        if action is not None and found.get("action") != action:
            continue
        if ref_prefix is not None and not str(found.get("ref", "")).startswith(ref_prefix):
            continue
        return copy.deepcopy(found)
    raise AssertionError(f"no {event} example with action {action!r} in {EXAMPLES}")


@dataclass
class Origin:
    """Repository ``owner/name`` as GitHub would hold it, under ``root`` (a
    :class:`gitsource.Source` at ``root/git``)."""

    root: Path
    full_name: str

    def __post_init__(self) -> None:
        self.source = Source(self.root / "git", self.full_name)

    @property
    def template(self) -> str:
        """The ``github_git_url`` setting that reaches it."""
        return url_template(self.root / "git")

    def commit(self, files: dict[str, str | None], branch: str = "main") -> str:
        """Write (or with None delete) ``files`` on ``branch``, commit, push; the sha."""
        return self.source.commit(files, branch)

    def repository(self, payload_repo: dict[str, Any]) -> dict[str, Any]:
        owner, name = self.full_name.split("/")
        repo = dict(payload_repo)
        repo.update(name=name, full_name=self.full_name, default_branch="main", fork=False,
                    private=False, clone_url=f"https://github.com/{self.full_name}.git")  # fmt: skip
        repo["owner"] = {**repo.get("owner", {}), "login": owner, "name": owner}
        return repo

    def push(self, after: str, before: str = ZERO, branch: str = "main") -> dict[str, Any]:
        """A ``push`` payload (GitHub's example) for ``before..after`` on ``branch``."""
        payload = example("push", ref_prefix="refs/heads/")
        payload.update(ref=f"refs/heads/{branch}", before=before, after=after,
                       created=before == ZERO, deleted=False, base_ref=None)  # fmt: skip
        payload["repository"] = self.repository(payload["repository"])
        payload["head_commit"] = {**(payload.get("head_commit") or {}), "id": after}
        return payload

    def pull_request(self, action: str, head: str, base: str, head_ref: str) -> dict[str, Any]:
        """A ``pull_request`` payload (GitHub's example) from ``head_ref`` into main."""
        payload = example("pull_request", action=action)
        repo = self.repository(payload["repository"])
        payload["repository"] = repo
        pr = payload["pull_request"]
        pr["head"].update(sha=head, ref=head_ref, label=f"x:{head_ref}", repo=repo)
        pr["base"].update(sha=base, ref="main", label="x:main", repo=repo)
        return payload
