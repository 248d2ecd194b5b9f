"""Repository content stays in the repository: a file of the checkout is read only when its
real path (symlinks followed) is inside the checkout.

A pull request can commit a symlink (``.github/workflows/ci.yml -> /etc/shadow``); reading
it would show a host file in a parse error or copy it into a VM. :func:`inside_repo`
refuses such a path with an error that names the path and never the target's content.
"""

from __future__ import annotations

from pathlib import Path

from vmrunner.errors import ConfigError
from vmrunner.workflow.check import Resolver, WorkflowSource, file_resolver


def is_inside(path: Path, root: Path) -> bool:
    """Whether ``path``'s real path is ``root``'s real path or under it (pure but for the
    symlinks it resolves)."""
    return path.resolve().is_relative_to(root.resolve())


def inside_repo(path: Path, root: Path, what: str) -> Path:
    """``path`` when its real path is inside ``root``; else raise ``ConfigError`` naming
    ``what`` and ``path`` (not where it points, and nothing of its content)."""
    if not is_inside(path, root):
        raise ConfigError(
            f"{what} {path} is outside the repository {root} (a symlink or '..' leads out); "
            "vmrunner reads repository content only from inside the repository"
        )
    return path


def repo_resolver(file: Path, root: Path) -> Resolver:
    """``workflow.check.file_resolver(file)`` that never reads a called workflow (``uses:
    ./...``) whose real path is outside ``root``: such a file is reported as unreadable,
    so no parse error can show a host file's content."""
    inner = file_resolver(file)
    parent = file.parent
    base = parent.parent.parent if parent.parts[-2:] == (".github", "workflows") else root

    def resolve(ref: str) -> WorkflowSource | None:
        if ref.startswith(("./", "$/")):
            target = base / ref[2:].split("@", 1)[0]
            if not is_inside(target, root):
                return WorkflowSource(str(target), None)
        return inner(ref)

    return resolve
