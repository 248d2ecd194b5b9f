"""Where the action of a ``uses:`` step comes from, and the host cache of remote actions.

* ``./path``: read from the job's workspace in the VM when the step starts (as on
  GitHub, so an action an earlier step wrote or checked out is found); it runs where it is.
* ``owner/repo[/path]@ref``: from a local actions directory when it is copied there, else
  its repository is fetched at ``ref`` (a tag, a branch or a full sha) through a
  :class:`RepoSource` (``vmrunner.github.repos.RepoCache``: the ``github_git_url``
  template and token) and its tree kept per sha under ``trees_dir``, shared by runs, jobs
  and processes (written to a temporary name and renamed into place).

A ref is resolved once per run (:class:`RemoteActions` remembers it), before the job's VM
boots where possible (:meth:`RemoteActions.prefetch`). Every failure is an
:class:`~vmrunner.runner.actions.ActionError` naming the action and what is wrong.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from vmrunner.errors import VmrunnerError
from vmrunner.runner import actions
from vmrunner.runner.action_refs import RemoteRef, is_remote, parse_remote
from vmrunner.runner.actions import Action, ActionError

__all__ = ["RemoteActions", "RemoteRef", "RepoSource", "from_settings", "is_remote", "parse_remote"]

if TYPE_CHECKING:
    from vmrunner.config import Settings


class RepoSource(Protocol):
    """What fetches action repositories (``vmrunner.github.repos.RepoCache``)."""

    def fetch(self, repo: str, want: str) -> str: ...
    def checkout(self, repo: str, sha: str, dest: Path) -> Path: ...


class RemoteActions:
    """Remote actions for one run: each ``repository@ref`` fetched once, its tree cached
    per sha under ``trees_dir``. ``secret`` (the token) is never shown in an error."""

    def __init__(self, repos: RepoSource, trees_dir: Path, secret: str = "") -> None:
        self.repos, self.trees_dir, self.secret = repos, trees_dir, secret
        self._trees: dict[tuple[str, str], tuple[str, Path] | ActionError] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def tree(self, uses: str, ref: RemoteRef) -> tuple[str, Path]:
        """(sha, host tree) of ``ref``'s repository at its ref; fetched once per run."""
        key = (ref.repository.lower(), ref.ref)
        async with self._locks.setdefault(key, asyncio.Lock()):
            if key not in self._trees:
                try:
                    self._trees[key] = await asyncio.to_thread(self.materialize, uses, ref)
                except ActionError as exc:  # remembered: every step using it fails alike
                    self._trees[key] = exc
            found = self._trees[key]
            if isinstance(found, ActionError):
                raise found
            return found

    def materialize(self, uses: str, ref: RemoteRef) -> tuple[str, Path]:
        """(sha, host tree) of ``ref``'s repository at its ref, fetched and kept under
        ``trees_dir`` (blocking; :meth:`tree` calls it once per run). Raises
        :class:`ActionError` naming the action, caused by what failed."""
        try:
            sha = self.repos.fetch(ref.repository, ref.ref)
            dest = self.trees_dir / ref.owner.lower() / ref.repo.lower() / sha
            if not dest.is_dir():
                self._checkout(ref, sha, dest)
        except (VmrunnerError, OSError) as exc:
            detail = str(exc).replace(self.secret, "***") if self.secret else str(exc)
            raise ActionError(
                f"The action '{uses}' cannot be fetched ({ref.repository} at '{ref.ref}'): {detail}"
            ) from exc
        return sha, dest

    def _checkout(self, ref: RemoteRef, sha: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".tmp-{sha}-{uuid.uuid4().hex}"
        try:
            self.repos.checkout(ref.repository, sha, tmp)
            shutil.rmtree(tmp / ".git", ignore_errors=True)
            try:
                tmp.rename(dest)
            except OSError:  # another process put it there first
                if not dest.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    async def load(self, uses: str) -> Action:
        """The remote action ``uses``, fetched (or cached) on the host."""
        ref = parse_remote(uses)
        sha, tree = await self.tree(uses, ref)
        where = tree / ref.path if ref.path else tree
        if not where.is_dir():
            raise ActionError(
                f"The action '{uses}': {ref.repository} at '{ref.ref}' ({sha[:12]}) has no "
                f"directory '{ref.path}'"
            )
        action = await asyncio.to_thread(actions.load_action, uses, where, tree)
        return _with_origin(action, ref)

    async def prefetch(self, uses_list: Iterable[str], depth: int = 0) -> None:
        """Fetch the remote actions among ``uses_list`` (and those their composite steps
        use) ahead of time; failures are left for the step to report when it runs."""
        wanted = {u for u in uses_list if is_remote(u)}
        loaded = await asyncio.gather(*(self.load(u) for u in wanted), return_exceptions=True)
        inner = [s.uses.text for a in loaded if isinstance(a, Action) for s in a.steps if s.uses]
        if inner and depth < 10:
            await self.prefetch(inner, depth + 1)


def _with_origin(action: Action, ref: RemoteRef) -> Action:
    return replace(action, repository=ref.repository, ref=ref.ref)


def from_settings(settings: Settings) -> RemoteActions:
    """Remote actions fetched through ``settings.github_git_url`` (with
    ``settings.github_token``), mirrored and cached under ``settings.cache_dir``."""
    from vmrunner.github.repos import RepoCache

    repos = RepoCache(settings.cache_dir, settings.github_git_url, settings.github_token)
    return RemoteActions(repos, settings.cache_dir / "actions", settings.github_token)
