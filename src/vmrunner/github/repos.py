"""Repositories at a commit: a cache of bare mirrors, one per GitHub repository.

:class:`RepoCache` fetches just what is wanted (a sha, a branch, a tag or a full ref) from
``url_template.format(owner=, repo=)`` into ``cache_dir/git/<owner>/<name>.git``, and
answers questions about commits it holds (changed files, a file's bytes, the workflow
files) and makes working trees of them. Used by the server (webhook dispatch, workers)
and for remote actions (``uses: owner/repo@ref``).

* A sha already in the mirror needs no network. Fetched commits are pinned under
  ``refs/vmrunner/keep/`` so that no ``git gc`` drops them.
* A token goes to git as an ``http.<scheme://host/>.extraheader`` through
  ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n`` in git's environment:
  never in argv, never in a file, never to another host.
* One process at a time changes a mirror (``fcntl.flock`` on ``<name>.lock``); reads
  need no lock (git writes objects and refs atomically).
* Bad names and refs, a missing repository or ref: ``UserInputError`` naming the
  repository and ref. A timeout or a transport failure: :class:`FetchError` (try again).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from vmrunner.errors import ConfigError, UserInputError, VmrunnerError
from vmrunner.procs import run_capture

SHA_RE = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
"""A full commit id (SHA-1, or SHA-256)."""
ZERO_SHA = "0" * 40
KEEP = "refs/vmrunner/keep/"
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,38}")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
_BAD_REF = re.compile(r"\.\.|//|@\{|[\x00-\x20\x7f~^:?*\[\\]|\.lock(?:/|$)|/\.|^[-./]|[./]$")
_MISSING = ("not found", "does not appear to be a git repository", "does not exist", "404")
LOCAL_TIMEOUT_S = 120.0


class FetchError(VmrunnerError):
    """Talking to the git server failed (timeout, network, server error): worth a retry."""


def split_repo(repo: str) -> tuple[str, str]:
    """``(owner, name)`` of ``"owner/name"`` in GitHub's character set; raises
    ``UserInputError`` otherwise (so that no name can lead out of the cache)."""
    owner, _, name = repo.partition("/")
    if not (_OWNER.fullmatch(owner) and _NAME.fullmatch(name)) or name in (".", ".."):
        raise UserInputError(f"invalid repository name {repo!r} (want owner/name)")
    return owner, name


def valid_ref(want: str) -> bool:
    """Whether ``want`` can name a ref or commit (git's ref-name rules, and no option)."""
    return bool(want) and len(want) <= 255 and not _BAD_REF.search(want)


def redact(url: str) -> str:
    """``url`` without a password or token in it."""
    return re.sub(r"//[^/@]*@", "//***@", url)


def _last(text: str) -> str:
    """The last non-empty line of ``text``."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


class RepoCache:
    """Bare mirrors of repositories under ``cache_dir/git``, fetched from
    ``url_template`` (with ``{owner}`` and ``{repo}``) with ``token`` as credential.
    ``timeout`` bounds each network operation (seconds)."""

    def __init__(
        self,
        cache_dir: Path,
        url_template: str,
        token: str | Callable[[str], str] = "",
        *,
        timeout: float = 600.0,
    ) -> None:
        self.root = cache_dir / "git"
        self.url_template, self.timeout = url_template, timeout
        self._token = token
        self._known: set[tuple[str, str]] = set()  # commits seen in a mirror (kept: pinned)

    def __repr__(self) -> str:  # never the token
        return f"RepoCache({self.root.parent}, {redact(self.url_template)!r})"

    def url(self, repo: str) -> str:
        """The URL ``repo`` is fetched from; ``ConfigError`` for a template with other
        placeholders than ``{owner}`` and ``{repo}``."""
        owner, name = split_repo(repo)
        try:
            return self.url_template.format(owner=owner, repo=name)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"github_git_url {redact(self.url_template)!r}: {exc!r}") from exc

    def mirror(self, repo: str) -> Path:
        """The bare mirror of ``repo`` (it may not exist yet)."""
        owner, name = split_repo(repo)
        return self.root / owner / f"{name}.git"

    # -- fetching ---------------------------------------------------------------------

    def fetch(self, repo: str, want: str) -> str:
        """The commit ``want`` (a full sha, a branch, a tag or a full ref) of ``repo``,
        fetched into its mirror unless the sha is there already; returns the commit sha.
        A branch wins over a tag of the same name. Raises ``UserInputError`` for a bad
        name, no such repository or no such ref, ``FetchError`` for a failed transfer."""
        split_repo(repo)
        if not valid_ref(want):
            raise UserInputError(f"invalid ref {want!r} for {repo}")
        if SHA_RE.fullmatch(want) and self.has_commit(repo, want):
            return want
        with self._locked(repo):
            self._ensure_mirror(repo)
            if SHA_RE.fullmatch(want):
                return self._fetch_sha(repo, want)
            return self._fetch_ref(repo, want)

    def has_commit(self, repo: str, sha: str) -> bool:
        """Whether the mirror of ``repo`` holds commit ``sha`` (no network; remembered
        once seen)."""
        mirror = self.mirror(repo)
        if (repo, sha) in self._known:
            return True
        if not (mirror / "HEAD").is_file() or not SHA_RE.fullmatch(sha):
            return False
        status, _, _ = self._local(repo, "cat-file", "-e", f"{sha}^{{commit}}", check=False)
        if status == 0:
            self._known.add((repo, sha))
        return status == 0

    @contextlib.contextmanager
    def _locked(self, repo: str) -> Iterator[None]:
        lock = self.mirror(repo).with_suffix(".lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with lock.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _ensure_mirror(self, repo: str) -> None:
        """Create the bare mirror (under the lock): made aside, then renamed in place."""
        mirror = self.mirror(repo)
        if (mirror / "HEAD").is_file():
            return
        shutil.rmtree(mirror, ignore_errors=True)
        fresh = mirror.with_name(f"{mirror.name}.new")
        shutil.rmtree(fresh, ignore_errors=True)
        self._git("init", "-q", "--bare", str(fresh))
        fresh.rename(mirror)

    def _fetch_sha(self, repo: str, sha: str) -> str:
        status, _ = self._remote(repo, "fetch", "-q", "--no-tags", "--", self.url(repo),
                                 f"+{sha}:{KEEP}{sha}")  # fmt: skip
        if status == 0 and self.has_commit(repo, sha):
            return sha
        self._ls_remote(repo, ["HEAD"])  # raises when the repository is not there
        # a server that refuses unadvertised shas: take its branches, tags and pulls
        self._remote(repo, "fetch", "-q", "--no-tags", "--", self.url(repo),
                     "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*",
                     "+refs/pull/*:refs/pull/*")  # fmt: skip
        if not self.has_commit(repo, sha):
            raise UserInputError(f"{repo} has no ref or commit {sha}")
        self._local(repo, "update-ref", f"{KEEP}{sha}", sha)
        return sha

    def _fetch_ref(self, repo: str, want: str) -> str:
        wanted = [want] if want.startswith("refs/") else [f"refs/heads/{want}", f"refs/tags/{want}"]
        found = self._ls_remote(repo, wanted)
        ref = next((r for r in wanted if r in found), None)
        if ref is None:
            raise UserInputError(f"{repo} has no ref or commit {want}")
        status, err = self._remote(repo, "fetch", "-q", "--no-tags", "--", self.url(repo),
                                   f"+{ref}:{ref}")  # fmt: skip
        if status != 0:
            where = redact(self.url(repo))
            raise FetchError(f"cannot fetch {ref} of {repo} from {where}: {_last(err)}")
        _, out, _ = self._local(repo, "rev-parse", "--verify", f"{ref}^{{commit}}")
        sha = out.decode().strip()
        self._local(repo, "update-ref", f"{KEEP}{sha}", sha)
        return sha

    def _ls_remote(self, repo: str, patterns: list[str]) -> dict[str, str]:
        """The remote's refs matching ``patterns`` exactly (ref: sha); raises
        ``UserInputError`` when there is no repository at the URL."""
        status, out = self._remote(repo, "ls-remote", "--", self.url(repo), *patterns,
                                   capture=True)  # fmt: skip
        if status != 0:
            where = redact(self.url(repo))
            if any(word in out.lower() for word in _MISSING):
                raise UserInputError(f"no repository {repo} at {where}")
            raise FetchError(f"cannot reach {repo} at {where}: {_last(out)}")
        refs: dict[str, str] = {}
        for line in out.splitlines():
            sha, _, ref = line.partition("\t")
            if ref in patterns:
                refs[ref] = sha
        return refs

    # -- processes ----------------------------------------------------------------------

    def _env(self, url: str, repo: str = "") -> Mapping[str, str]:
        """git's environment: no prompts, and the token (for ``repo``) as a header for
        ``url``'s host."""
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="/bin/false")
        token = self._token(repo) if callable(self._token) else self._token
        if not token:
            return env
        parts = urlsplit(url)
        scope = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/"
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        index = int(env.get("GIT_CONFIG_COUNT", "0") or 0)
        env[f"GIT_CONFIG_KEY_{index}"] = f"http.{scope}.extraheader"
        env[f"GIT_CONFIG_VALUE_{index}"] = f"Authorization: Basic {basic}"
        env["GIT_CONFIG_COUNT"] = str(index + 1)
        return env

    def _remote(self, repo: str, *argv: str, capture: bool = False) -> tuple[int, str]:
        """Run a git command that talks to ``repo``'s server in its mirror: (status, its
        stdout when ``capture`` and it succeeded, else its stderr, URLs redacted). Raises
        ``FetchError`` on timeout."""
        cmd = ["git", "-C", str(self.mirror(repo)), *argv]
        status, out, err = run_capture(
            cmd, timeout=self.timeout, env=self._env(self.url(repo), repo)
        )
        if status is None:
            raise FetchError(f"{argv[0]} of {repo} timed out after {self.timeout:.0f} s")
        text = out if capture and status == 0 else err
        return status, redact(text.decode("utf-8", "replace"))

    def _local(self, repo: str, *argv: str, check: bool = True) -> tuple[int | None, bytes, bytes]:
        return self._git("-C", str(self.mirror(repo)), *argv, check=check)

    def _git(self, *argv: str, check: bool = True) -> tuple[int | None, bytes, bytes]:
        status, out, err = run_capture(["git", *argv], timeout=LOCAL_TIMEOUT_S)
        if check and status != 0:
            detail = "timed out" if status is None else _last(err.decode("utf-8", "replace"))
            raise UserInputError(f"git {argv[2] if argv[0] == '-C' else argv[0]}: {detail}")
        return status, out, err

    # -- reading commits -----------------------------------------------------------------

    def _commit(self, repo: str, sha: str) -> str:
        """``sha``, checked to be a full id of a commit the mirror holds."""
        if not self.has_commit(repo, sha):
            raise UserInputError(f"{repo} has no commit {sha!r} in the cache (fetch it first)")
        return sha

    def parent(self, repo: str, sha: str) -> str | None:
        """The first parent of commit ``sha``, None for a root commit."""
        self._commit(repo, sha)
        status, out, _ = self._local(repo, "rev-parse", "-q", "--verify", f"{sha}^1", check=False)
        return out.decode().strip() if status == 0 else None

    def merge_base(self, repo: str, a: str, b: str) -> str | None:
        """The best common ancestor of commits ``a`` and ``b``, None when unrelated."""
        self._commit(repo, a)
        self._commit(repo, b)
        status, out, _ = self._local(repo, "merge-base", a, b, check=False)
        return out.decode().strip() if status == 0 else None

    def changed_files(
        self, repo: str, base: str, head: str, *, merge_base: bool = False
    ) -> tuple[str, ...]:
        """The paths changed from ``base`` to ``head`` (a rename is both names); with
        ``merge_base``, from their merge base (``base...head``). A ``base`` of zeros (a new
        branch) means every file of ``head``. Both commits must be in the mirror."""
        self._commit(repo, head)
        if set(base) == {"0"}:
            _, out, _ = self._local(repo, "ls-tree", "-r", "-z", "--name-only", head)
            return tuple(p for p in out.decode("utf-8", "replace").split("\0") if p)
        self._commit(repo, base)
        spec = [f"{base}...{head}"] if merge_base else [base, head]
        _, out, _ = self._local(repo, "diff", "--no-renames", "--name-only", "-z", *spec, "--")
        return tuple(p for p in out.decode("utf-8", "replace").split("\0") if p)

    def read_file(self, repo: str, sha: str, path: str) -> bytes:
        """The bytes of file ``path`` at commit ``sha``; ``UserInputError`` if it has none."""
        self._commit(repo, sha)
        status, out, _ = self._local(repo, "cat-file", "blob", f"{sha}:{path}", check=False)
        if status != 0:
            raise UserInputError(f"{repo} has no file {path} at {sha}")
        return out

    def workflow_paths(self, repo: str, sha: str) -> list[str]:
        """The workflow files of commit ``sha``: regular files ``.github/workflows/*.yml``
        and ``*.yaml`` (not subdirectories; a symlink is not read), sorted."""
        self._commit(repo, sha)
        _, out, _ = self._local(repo, "ls-tree", "-z", sha, "--", ".github/workflows/")
        found = []
        for entry in out.decode("utf-8", "replace").split("\0"):
            meta, _, path = entry.partition("\t")
            mode = meta.split(" ")[0]
            if mode in ("100644", "100755") and path.endswith((".yml", ".yaml")):
                found.append(path)
        return sorted(found)

    def checkout(self, repo: str, sha: str, dest: Path) -> Path:
        """A working tree of commit ``sha`` at ``dest`` (which must not exist or be empty),
        fetched first if need be, on a detached HEAD, with ``origin`` set to
        ``https://github.com/<repo>.git`` so that ``git_info`` names the repository. Its
        objects are hard links to (or copies of) the mirror's: it does not depend on it."""
        self.fetch(repo, sha)
        self._git(
            "clone", "-q", "--local", "--no-checkout", "--", str(self.mirror(repo)), str(dest)
        )
        self._git("-C", str(dest), "remote", "set-url", "origin", f"https://github.com/{repo}.git")
        self._git(
            "-C", str(dest), "-c", "advice.detachedHead=false", "checkout", "-q", "--detach", sha
        )
        return dest
