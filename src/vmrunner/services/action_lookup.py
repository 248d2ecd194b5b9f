"""Reading the ``action.yml`` of remote actions for ``vmrunner check`` (and the corpus
count): light, no VM, no store, no event loop.

:class:`ActionLookup` resolves ``owner/repo[/path]@ref`` as ``vmrunner run`` finds it:
first in an actions directory (``runner.actions.in_actions_dirs``), then in vmrunner's
cache of action repositories (the bare mirrors ``RepoCache`` keeps under
``cache_dir/git``), read-only: the ref is resolved in the mirror and the file read from
the commit, nothing is written. With ``fetch``, an action missing there is fetched
through ``github_git_url`` (with the token) by the same ``RepoCache`` as ``vmrunner run``,
each git operation bounded by :data:`FETCH_TIMEOUT_S`. What it cannot look at is a note
("not checked: ..."); a missing repository, ref or ``action.yml`` found while fetching is
an error naming the action. Each ``uses`` is resolved once per lookup.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vmrunner.errors import UserInputError, VmrunnerError
from vmrunner.runner import actions
from vmrunner.runner.action_refs import RemoteRef, parse_remote
from vmrunner.workflow.action_check import ActionInfo, ActionResolution
from vmrunner.workflow.loader import MappingNode, ScalarNode, YamlError, load_text

if TYPE_CHECKING:
    from vmrunner.config import Settings
    from vmrunner.github.repos import RepoCache

FETCH_TIMEOUT_S = 60.0
"""The bound of each git operation of ``--fetch-actions`` (seconds)."""
LOCAL_TIMEOUT_S = 30.0
_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # as RepoCache's SHA_RE


class ActionLookup:
    """Resolves remote actions for checking (see the module docstring). ``repos`` is
    made on first use (from ``settings``, loaded then when not given)."""

    def __init__(
        self, settings: Settings | None = None, *, fetch: bool = False,
        actions_dirs: Sequence[Path] | None = None,
    ) -> None:  # fmt: skip
        self._settings, self.fetch, self._dirs = settings, fetch, actions_dirs
        self._repos: RepoCache | None = None
        self._memo: dict[str, ActionResolution] = {}

    def __call__(self, uses: str) -> ActionResolution:
        if uses not in self._memo:
            self._memo[uses] = self._resolve(uses)
        return self._memo[uses]

    def _resolve(self, uses: str) -> ActionResolution:
        try:
            ref = parse_remote(uses)
            in_dir = actions.in_actions_dirs(uses, self._actions_dirs())
            if in_dir is not None:
                return _read_dir(uses, in_dir)
            return self._from_repository(uses, ref)
        except UserInputError as exc:  # a malformed reference or repository name
            return ActionResolution(error=str(exc))
        except VmrunnerError as exc:  # settings, git missing: nothing is looked at
            return ActionResolution(note=f"{uses}: {exc}")

    def _from_repository(self, uses: str, ref: RemoteRef) -> ActionResolution:
        tree = self._cached_tree(ref)  # the common case needs no git, hence no process
        if tree is None:
            in_mirror = self._from_mirror(uses, ref)
            if in_mirror is not None:
                return in_mirror
            if not self.fetch:
                return ActionResolution(
                    note=f"{ref.repository}@{ref.ref} is not in the action cache "
                    "(--fetch-actions fetches it)"
                )
            fetched = self._fetch_tree(uses, ref)
            if isinstance(fetched, ActionResolution):
                return fetched
            tree = fetched
        return _read_dir(uses, tree / ref.path if ref.path else tree, ref)

    def _from_mirror(self, uses: str, ref: RemoteRef) -> ActionResolution | None:
        """The action read from its repository's mirror when it holds ``ref`` but no tree
        was made of it (fetched for a check, or by the server): asked of git, read-only."""
        mirror = self.settings().cache_dir / "git" / ref.owner / f"{ref.repo}.git"
        if not (mirror / "HEAD").is_file():
            return None
        repos = self._repo_cache()
        sha = _sha_in_mirror(repos, ref)
        return _read_commit(repos, uses, ref, sha) if sha is not None else None

    def _fetch_tree(self, uses: str, ref: RemoteRef) -> Path | ActionResolution:
        """The action's tree, fetched and kept as ``vmrunner run`` does
        (``RemoteActions.materialize``); a note when the server cannot be reached, an error
        when the repository or ref is not there."""
        from vmrunner.github.repos import FetchError
        from vmrunner.runner.remote_actions import RemoteActions

        s = self.settings()
        remote = RemoteActions(self._repo_cache(), s.cache_dir / "actions", s.github_token)
        try:
            return remote.materialize(uses, ref)[1]
        except actions.ActionError as exc:
            if isinstance(exc.__cause__, FetchError):
                return ActionResolution(
                    note=f"{ref.repository}@{ref.ref} cannot be fetched: {exc.__cause__}"
                )
            return ActionResolution(error=str(exc))

    def _cached_tree(self, ref: RemoteRef) -> Path | None:
        """The tree ``vmrunner run`` keeps of the commit ``ref`` names, when both the ref
        (in the repository's mirror, read as files: ``RepoCache``'s layout) and the tree
        (under ``cache_dir/actions``, per sha) are there."""
        cache = self.settings().cache_dir
        sha = ref.ref if _SHA.fullmatch(ref.ref) else None
        if sha is None:
            sha = _ref_file(cache / "git" / ref.owner / f"{ref.repo}.git", ref.ref)
        tree = cache / "actions" / ref.owner.lower() / ref.repo.lower() / (sha or "")
        return tree if sha and tree.is_dir() else None

    def _repo_cache(self) -> RepoCache:
        from vmrunner.github.repos import RepoCache

        if self._repos is None:
            s = self.settings()
            self._repos = RepoCache(
                s.cache_dir, s.github_git_url, s.github_token, timeout=FETCH_TIMEOUT_S
            )
        return self._repos

    def _actions_dirs(self) -> Sequence[Path]:
        if self._dirs is None:
            self._dirs = (self.settings().state_dir / "actions",)
        return self._dirs

    def settings(self) -> Settings:
        """The settings (loaded on first use: ``vmrunner check`` without remote actions
        never reads them)."""
        if self._settings is None:
            from vmrunner.config import load_settings

            self._settings = load_settings()  # ConfigError: a note for each action
        return self._settings


def _read_commit(repos: RepoCache, uses: str, ref: RemoteRef, sha: str) -> ActionResolution:
    """The action's ``action.yml`` (or ``.yaml``) at commit ``sha`` of the mirror."""
    base = f"{ref.path}/" if ref.path else ""
    for name in actions.ACTION_FILES:
        try:
            text = repos.read_file(ref.repository, sha, base + name)
        except UserInputError:
            continue
        return info_of(uses, text.decode("utf-8", "replace"), f"{uses}/{name}")
    where = f" in '{ref.path}'" if ref.path else ""
    return ActionResolution(
        error=f"The action '{uses}' has no action.yml or action.yaml{where} "
        f"({ref.repository} at '{ref.ref}', {sha[:12]})"
    )


def _read_dir(uses: str, where: Path, ref: RemoteRef | None = None) -> ActionResolution:
    """The action in directory ``where`` (an actions directory's, or a cached tree)."""
    for name in actions.ACTION_FILES:
        if (where / name).is_file():
            try:
                text = (where / name).read_text("utf-8", "replace")
            except OSError as exc:
                return ActionResolution(note=f"{uses}: {exc}")
            return info_of(uses, text, str(where / name))
    inside = f" in '{ref.path}'" if ref is not None and ref.path else ""
    return ActionResolution(error=f"The action '{uses}' has no action.yml or action.yaml{inside}")


def _ref_file(mirror: Path, ref: str) -> str | None:
    """The sha a branch (first) or tag ``ref`` names in the bare ``mirror``, read from its
    loose ref files and ``packed-refs`` (the peeled commit of an annotated tag there);
    None when it is not there."""
    names = [ref] if ref.startswith("refs/") else [f"refs/heads/{ref}", f"refs/tags/{ref}"]
    packed: dict[str, str] = {}
    try:
        lines = (mirror / "packed-refs").read_text("ascii", "replace").splitlines()
    except OSError:
        lines = []
    last = ""
    for line in lines:
        if line.startswith("^") and last:
            packed[last] = line[1:].strip()
        elif not line.startswith("#"):
            sha, _, last = line.partition(" ")
            packed[last] = sha
    for name in names:
        try:
            found = (mirror / name).read_text("ascii", "replace").strip()
        except OSError:
            found = packed.get(name, "")
        if _SHA.fullmatch(found):
            return found
    return None


def _sha_in_mirror(repos: RepoCache, ref: RemoteRef) -> str | None:
    """The commit ``ref`` names in the repository's mirror, asked of git (read-only);
    None when it is not there."""
    from vmrunner.github.repos import SHA_RE
    from vmrunner.procs import run_capture

    mirror = repos.mirror(ref.repository)
    if not (mirror / "HEAD").is_file():
        return None
    if SHA_RE.fullmatch(ref.ref):
        return ref.ref if repos.has_commit(ref.repository, ref.ref) else None
    wanted = [ref.ref] if ref.ref.startswith("refs/") else [f"refs/heads/{ref.ref}",
                                                             f"refs/tags/{ref.ref}"]  # fmt: skip
    for name in wanted:
        argv = ["git", "-C", str(mirror), "rev-parse", "-q", "--verify", f"{name}^{{commit}}"]
        status, out, _ = run_capture(argv, timeout=LOCAL_TIMEOUT_S)
        if status == 0:
            return out.decode().strip()
    return None


def info_of(uses: str, text: str, filename: str) -> ActionResolution:
    """What checking needs of the ``action.yml`` ``text``, parsed as ``vmrunner run``
    parses it (``runner.actions.parse_action``); a Docker action is kept (a warning)."""
    try:
        root = load_text(text, filename)
    except YamlError as exc:
        return ActionResolution(error=f"The action '{uses}' cannot be read: {exc}")
    runs = root.get("runs") if isinstance(root, MappingNode) else None
    using = runs.get("using") if isinstance(runs, MappingNode) else None
    if isinstance(using, ScalarNode) and using.text.strip() == "docker":
        return ActionResolution(ActionInfo("docker", ()))
    try:
        action = actions.parse_action(uses, root)
    except actions.ActionError as exc:
        return ActionResolution(error=str(exc))
    using_text = action.node.using if action.node is not None else "composite"
    inputs = tuple((i.name, i.required and i.default is None) for i in action.inputs)
    return ActionResolution(ActionInfo(using_text, inputs))
