"""``RUNNER_TOOL_CACHE`` that persists across the VMs of one image (setting ``tool_cache``).

Every job gets ``RUNNER_TOOL_CACHE`` and ``AGENT_TOOLSDIRECTORY`` (GitHub's
``/opt/hostedtoolcache``, :func:`tools_env`). With the setting on, the host keeps tool
versions per image under ``<cache dir>/tool-cache/<image>/entries/<tool>/<version>``:

* before the job's first step, :meth:`ToolCache.restore` copies every kept version into
  the guest's tool cache (under a shared ``flock``, so no eviction runs meanwhile);
* after the job (its post steps done), :meth:`ToolCache.save` keeps the versions the job
  added. A version is a ``<tool>/<version>`` directory holding a ``*.complete`` marker,
  the toolkit's sign that it was written in full (``@actions/tool-cache`` writes
  ``<arch>.complete`` last and ignores a version without it). They are moved aside in
  the guest (to :data:`STAGING` beside the tool cache) and copied out with ``Machine.copy_out`` (its quota and safe extraction, at
  most ``tool_cache_max_mib``) into a ``.tmp-<pid>-*`` directory of the store, then each
  renamed into place under an exclusive ``flock``: a version another job saved first
  stays. Past the size limit the oldest saved versions are evicted (:func:`evict`).

Failures of either direction do not fail the job: they are reported as messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import posixpath
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmrunner.config import Settings
from vmrunner.errors import VmrunnerError
from vmrunner.runner.context import GuestLayout
from vmrunner.runner.guest import Guest
from vmrunner.vm.machine import ExecOptions

DEFAULT_MAX_MIB = 2048
STAGING = ".vmrunner-tools-out"
"""Beside the guest's tool cache (same file system: the versions are renamed into it)."""
_NAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]{0,127}")

# Lists the complete tool versions under $1, one "tool/version" per line.
_LIST = r"""cd "$1" 2>/dev/null || exit 0
for d in */*/; do d=${d%/}
  [ -d "$d" ] && [ ! -L "$d" ] && [ ! -L "${d%%/*}" ] || continue
  set -- "$d"/*.complete; [ -e "$1" ] && printf '%s\n' "$d"
done
"""
# Moves the versions named in the remaining arguments from $1 to $2 (tool/version kept).
_MOVE = r"""src=$1 out=$2; shift 2; rm -rf "$out"; mkdir -p "$out"
for d in "$@"; do mkdir -p "$out/${d%%/*}" && mv "$src/$d" "$out/$d" || exit 1; done
"""


def tools_env(layout: GuestLayout) -> dict[str, str]:
    """The tool-cache variables every job gets (``RUNNER_TOOL_CACHE`` and the older
    ``AGENT_TOOLSDIRECTORY`` that setup-python reads first)."""
    return {"RUNNER_TOOL_CACHE": layout.tool_cache, "AGENT_TOOLSDIRECTORY": layout.tool_cache}


@dataclass(frozen=True)
class Kept:
    """One kept tool version: ``tool/version``, its bytes, and when it was saved."""

    name: str
    size: int
    saved_at: float


def evict(kept: Sequence[Kept], limit: int) -> list[str]:
    """The versions to remove so that the rest fit in ``limit`` bytes: the oldest saved
    first (ties by name), no more than needed. Pure."""
    total = sum(k.size for k in kept)
    gone: list[str] = []
    for k in sorted(kept, key=lambda k: (k.saved_at, k.name)):
        if total <= limit:
            break
        gone.append(k.name)
        total -= k.size
    return gone


def valid_version(name: str) -> bool:
    """Whether ``tool/version`` (as the guest listed it) is safe to keep: exactly two
    plain path components, neither ``.``/``..`` nor hidden."""
    parts = name.split("/")
    return len(parts) == 2 and all(_NAME.fullmatch(p) and p not in (".", "..") for p in parts)


def _tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += Path(root, f).lstat().st_size
    return total


class ToolStore:
    """The kept tool versions of one image, on the host (shared by processes)."""

    def __init__(self, root: Path, limit: int) -> None:
        self.root, self.limit = root, limit
        self.entries = root / "entries"

    @contextlib.contextmanager
    def _lock(self, mode: int) -> Iterator[None]:
        self.entries.mkdir(parents=True, exist_ok=True)
        with (self.root / "lock").open("a") as f:
            fcntl.flock(f, mode)
            yield

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[list[str]]:
        """The kept versions, none evicted until the block ends (a shared lock)."""
        self.entries.mkdir(parents=True, exist_ok=True)
        with (self.root / "lock").open("a") as f:
            await asyncio.to_thread(fcntl.flock, f, fcntl.LOCK_SH)
            yield self.names()

    def names(self) -> list[str]:
        """Every kept ``tool/version``."""
        found = (f"{t.name}/{v.name}" for t in self.entries.glob("*") for v in t.glob("*"))
        return sorted(n for n in found if valid_version(n))

    def staging(self) -> Path:
        """A fresh directory for a copy-out (``.tmp-<pid>-*``: gc removes a dead one's)."""
        path = self.root / f".tmp-{os.getpid()}-{os.urandom(4).hex()}"
        path.mkdir(parents=True)
        return path

    def adopt(self, staged: Path, names: Sequence[str], now: float | None = None) -> list[str]:
        """Rename the versions ``names`` from ``staged`` into the store (those already
        kept stay as they are, one larger than the limit is skipped), then evict the
        oldest past the limit; returns the names it added that are kept now."""
        added: list[str] = []
        with self._lock(fcntl.LOCK_EX):
            for name in names:
                src, dst = staged / name, self.entries / name
                if dst.exists() or not src.is_dir() or src.is_symlink():
                    continue
                if _tree_size(src) > self.limit:  # could never fit: would only evict others
                    continue
                dst.parent.mkdir(exist_ok=True)
                src.rename(dst)
                stamp = time.time() if now is None else now
                os.utime(dst, (stamp, stamp))
                added.append(name)
            self._evict()
        return [n for n in added if (self.entries / n).is_dir()]

    def _evict(self) -> None:
        kept = [Kept(n, _tree_size(self.entries / n), (self.entries / n).stat().st_mtime)
                for n in self.names()]  # fmt: skip
        for name in evict(kept, self.limit):
            shutil.rmtree(self.entries / name, ignore_errors=True)
            with contextlib.suppress(OSError):
                (self.entries / name).parent.rmdir()  # the tool's last version went


Say = Callable[[str], None]


@dataclass(frozen=True)
class Restored:
    """What one job's VM got from the store (so that only what it adds is saved)."""

    store: ToolStore
    names: frozenset[str]


class ToolCache:
    """The host's tool caches, one :class:`ToolStore` per image."""

    def __init__(self, root: Path, limit: int) -> None:
        self.root, self.limit = root, limit

    def store(self, image: str) -> ToolStore:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", image).strip("._") or "image"
        return ToolStore(self.root / slug, self.limit)

    async def restore(self, guest: Guest, image: str, dest: str, say: Say) -> Restored:
        """Copy the image's kept versions into ``dest`` in the guest."""
        store = self.store(image)
        async with store.reading() as names:
            try:
                if names:
                    await guest.copy_in(store.entries, dest, timeout=1800)
            except (VmrunnerError, OSError) as exc:
                say(f"the tool cache was not restored: {exc}")
                return Restored(store, frozenset())
        return Restored(store, frozenset(names))

    async def save(self, guest: Guest, restored: Restored, src: str, say: Say) -> list[str]:
        """Keep the complete versions under ``src`` in the guest that it did not get from
        the store; returns those kept. Moves them out of ``src`` (the VM is done)."""
        try:
            names = await _new_versions(guest, src, restored.names)
            if not names:
                return []
            out = posixpath.join(posixpath.dirname(src.rstrip("/")), STAGING)
            argv = ["sh", "-c", _MOVE, "sh", src, out, *names]
            res = await guest.execute(argv, ExecOptions(timeout=600))
            if not res.ok:
                raise VmrunnerError(res.stderr.decode(errors="replace")[-500:])
            staged = restored.store.staging()
            try:
                await guest.copy_out(out, staged, timeout=1800, max_bytes=self.limit)
                return await asyncio.to_thread(restored.store.adopt, staged, names)
            finally:
                shutil.rmtree(staged, ignore_errors=True)
        except (VmrunnerError, OSError) as exc:  # OSError: the host's disk (and timeouts)
            say(f"the tool cache was not saved: {exc}")
            return []


async def _new_versions(guest: Guest, src: str, restored: frozenset[str]) -> list[str]:
    res = await guest.execute(["sh", "-c", _LIST, "sh", src], ExecOptions(timeout=120))
    if not res.ok:
        raise VmrunnerError(f"cannot list {src}: {res.stderr.decode(errors='replace')[-300:]}")
    listed = res.stdout.decode(errors="replace").splitlines()
    return [n for n in listed if valid_version(n) and n not in restored]


def from_settings(settings: Settings) -> ToolCache | None:
    """The host's tool caches when the ``tool_cache`` setting is on (else None)."""
    if not settings.tool_cache:
        return None
    return ToolCache(settings.cache_dir / "tool-cache", settings.tool_cache_max_mib << 20)
