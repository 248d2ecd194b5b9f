"""Local git servers for tests: a bare repository ``<root>/<owner>/<name>.git`` that a
:class:`~vmrunner.github.repos.RepoCache` reaches through ``file://`` (the URL template is
:func:`url_template`), filled from a working clone by :meth:`Source.commit`."""

from __future__ import annotations

import subprocess
from pathlib import Path

IDENTITY = ["-c", "user.name=t", "-c", "user.email=t@e", "-c", "commit.gpgsign=false"]


def git(*argv: str) -> str:
    """Run git (failing the test on an error) and return its stdout."""
    done = subprocess.run(["git", *IDENTITY, *argv], check=True, capture_output=True, text=True)
    return done.stdout.strip()


def url_template(root: Path) -> str:
    return f"file://{root}/{{owner}}/{{repo}}.git"


class Source:
    """A bare repository ``repo`` ("owner/name") under ``root`` and a clone to commit in."""

    def __init__(self, root: Path, repo: str) -> None:
        self.bare = root / f"{repo}.git"
        self.work = root.parent / f"work-{repo.replace('/', '-')}"
        self.bare.parent.mkdir(parents=True, exist_ok=True)
        git("init", "-q", "--bare", "-b", "main", str(self.bare))
        git("init", "-q", "-b", "main", str(self.work))
        git("-C", str(self.work), "remote", "add", "origin", str(self.bare))

    def commit(self, files: dict[str, str | None], branch: str = "main") -> str:
        """Commit ``files`` (path: text; None deletes it) on ``branch`` and push it; the
        new sha. A branch that does not exist yet starts at the current HEAD."""
        exists = git("-C", str(self.work), "branch", "--list", branch)
        has_head = subprocess.run(["git", "-C", str(self.work), "rev-parse", "-q", "--verify",
                                   "HEAD"], capture_output=True).returncode == 0  # fmt: skip
        if has_head:
            git("-C", str(self.work), "checkout", "-q", *([] if exists else ["-b"]), branch)
        for name, text in files.items():
            path = self.work / name
            if text is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git("-C", str(self.work), "add", "-A")
        git("-C", str(self.work), "commit", "-q", "--allow-empty", "-m", f"change {list(files)}")
        git("-C", str(self.work), "push", "-q", "-f", "origin", branch)
        return git("-C", str(self.work), "rev-parse", "HEAD")

    def tag(self, name: str, sha: str, annotated: bool = False) -> None:
        git("-C", str(self.work), "tag", *(["-a", "-m", name] if annotated else []), name, sha)
        git("-C", str(self.work), "push", "-q", "origin", f"refs/tags/{name}")
