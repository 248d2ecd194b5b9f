"""The image cache: built images keyed by recipe digest, verified before use.

Layout under ``Settings.images_dir``::

    <name>/<digest16>/{rootfs.raw, vmlinuz, initrd.cpio, manifest.json}
    <name>/.lock                 flock held while building
    <name>/.tmp-<pid>-<token>/   a build in progress (removed by gc when its owner died)

A build is written to a temporary directory and renamed into place, so readers
never see a half-built image; a per-name lock makes concurrent vmrunner
processes build it once. The temporary directory is removed whatever ends the
build (failure, ``BuildCancelledError``, Ctrl-C); its ``build.log`` can be
copied out first.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from vmrunner.cancel import CancelToken
from vmrunner.errors import ImageError
from vmrunner.images.builder import build_image
from vmrunner.images.manifest import Image, Progress, load_image
from vmrunner.images.recipe import BUILTIN_RECIPES, Recipe

# ``Image`` lives in :mod:`.manifest`, below the builder; re-exported for callers.
__all__ = ["Image", "ImageCache", "Progress"]

LOCK_POLL_S = 0.2


class ImageCache:
    """Looks up, builds and lists images under one cache directory."""

    def __init__(self, images_dir: Path, recipes: dict[str, Recipe] | None = None) -> None:
        self.dir = images_dir
        self.recipes = recipes if recipes is not None else BUILTIN_RECIPES

    def recipe(self, name: str) -> Recipe:
        try:
            return self.recipes[name]
        except KeyError:
            known = ", ".join(sorted(self.recipes))
            raise ImageError(f"unknown image {name!r} (known: {known})") from None

    def entry(self, name: str) -> Path:
        return self.dir / name / self.recipe(name).digest()[:16]

    def find(self, name: str) -> Image | None:
        """The built, verified image for ``name``'s current recipe, or None if not built."""
        entry = self.entry(name)
        if not (entry / "manifest.json").exists():
            return None
        return load_image(entry)

    @contextlib.contextmanager
    def lock(self, name: str, cancel: CancelToken | None = None) -> Iterator[None]:
        """Hold ``name``'s build lock; waiting for it ends with ``BuildCancelledError``
        when ``cancel`` is set."""
        d = self.dir / name
        d.mkdir(parents=True, exist_ok=True)
        with (d / ".lock").open("w") as fh:
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | (fcntl.LOCK_NB if cancel else 0))
                    break
                except BlockingIOError:
                    assert cancel is not None
                    cancel.wait(LOCK_POLL_S)
                    cancel.check(f"waiting for the build lock of {name}")
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def ensure(
        self,
        name: str,
        progress: Progress | None = None,
        *,
        force: bool = False,
        stage: Callable[[str], None] | None = None,
        cancel: CancelToken | None = None,
        build_log: Path | None = None,
    ) -> Image:
        """The image for ``name``, building it first if needed (once across processes).

        ``stage`` and ``cancel`` are passed to ``build_image`` (``stage`` is not called
        for a cached image); a cancelled build raises ``BuildCancelledError`` once its
        temporary directory is removed. When a build ran, passed or failed, its log is
        copied to ``build_log`` (if given) first.
        """
        if not force:
            image = self.find(name)
            if image is not None:
                return image
        with self.lock(name, cancel):
            if not force:
                image = self.find(name)  # another process may have built it meanwhile
                if image is not None:
                    return image
            recipe = self.recipe(name)
            final = self.entry(name)
            tmp = self.dir / name / f".tmp-{os.getpid()}-{os.urandom(4).hex()}"
            try:
                try:
                    build_image(recipe, tmp, progress or (lambda _msg: None), stage, cancel)
                finally:
                    if build_log is not None and (tmp / "build.log").is_file():
                        with contextlib.suppress(OSError):  # never hides the build's own error
                            shutil.copyfile(tmp / "build.log", build_log)
                if final.exists():
                    shutil.rmtree(final)
                tmp.rename(final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            self._prune(name, keep=final)
            return load_image(final)

    def _prune(self, name: str, keep: Path) -> None:
        for other in (self.dir / name).iterdir():
            if other != keep and not other.name.startswith(".") and other.is_dir():
                shutil.rmtree(other, ignore_errors=True)

    def list(self) -> list[Image]:
        """Every image in the cache (current or not), without verifying them."""
        out: list[Image] = []
        if not self.dir.is_dir():
            return out
        for manifest in sorted(self.dir.glob("*/*/manifest.json")):
            with contextlib.suppress(ImageError):
                out.append(load_image(manifest.parent, verify=False))
        return out
