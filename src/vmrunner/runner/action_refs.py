"""References to actions in other repositories (``owner/repo[/path]@ref``), split and
recognised: light (no process, no event loop), for the runner and ``vmrunner check``."""

from __future__ import annotations

import re
from dataclasses import dataclass

from vmrunner.runner import actions
from vmrunner.runner.actions import ActionError

_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")


@dataclass(frozen=True)
class RemoteRef:
    """``owner/repo[/path]@ref``, split."""

    owner: str
    repo: str
    path: str
    ref: str

    @property
    def repository(self) -> str:
        return f"{self.owner}/{self.repo}"


def parse_remote(uses: str) -> RemoteRef:
    """Split ``owner/repo[/path]@ref``; raises :class:`ActionError` when it is not that."""
    name, at, ref = uses.partition("@")
    parts = name.split("/")
    if not at or not ref.strip() or len(parts) < 2:
        raise ActionError(
            f"The action '{uses}' is not of the form owner/repo[/path]@ref (a tag, a branch "
            "or a full commit sha), or ./path for an action in the repository"
        )
    owner, repo, sub = parts[0], parts[1], [p for p in parts[2:] if p]
    if not _NAME.match(owner) or not _NAME.match(repo) or repo in (".", ".."):
        raise ActionError(f"The action '{uses}' names no valid repository ('{owner}/{repo}')")
    if any(p in (".", "..") for p in sub) or ref.startswith("-"):
        raise ActionError(f"The action '{uses}' has an invalid path or ref")
    return RemoteRef(owner, repo, "/".join(sub), ref)


def is_remote(uses: str) -> bool:
    """Whether ``uses`` names an action in another repository (not checkout, docker, ./)."""
    return not (
        uses.startswith(("./", "docker://")) or actions.is_checkout(uses) or uses.startswith("/")
    )
