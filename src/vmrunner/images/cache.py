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
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vmrunner.cancel import CancelToken
from vmrunner.errors import ImageError
from vmrunner.images.recipe import BUILTIN_RECIPES, Recipe

Progress = Callable[[str], None]

EXT4_MAGIC_OFFSET = 1080
LOCK_POLL_S = 0.2


@dataclass(frozen=True)
class Image:
    """A built image: a raw ext4 root disk, a kernel and an initramfs."""

    name: str
    digest: str
    path: Path
    kernel_version: str
    built_at: float
    build_seconds: float

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs.raw"

    @property
    def kernel(self) -> Path:
        return self.path / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.path / "initrd.cpio"

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "digest": self.digest,
            "path": str(self.path),
            "kernel_version": self.kernel_version,
            "built_at": self.built_at,
            "build_seconds": self.build_seconds,
            "disk_bytes": _allocated(self.rootfs),
        }


def _allocated(path: Path) -> int:
    try:
        return path.stat().st_blocks * 512
    except OSError:
        return 0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_image(image: Image, hashes: dict[str, str]) -> None:
    """Raise ``ImageError`` naming the file when a part is missing or corrupt.

    Checks the kernel and initramfs against their recorded SHA-256 and the root
    disk's ext4 superblock magic. Does not read the whole root disk.
    """
    for part in (image.kernel, image.initrd, image.rootfs):
        if not part.is_file():
            raise ImageError(
                f"image {image.name}: missing {part} (run 'vmrunner image build {image.name}')"
            )
    for part in (image.kernel, image.initrd):
        if hashes.get(part.name) != _sha256(part):
            raise ImageError(
                f"image {image.name}: {part} is corrupt (checksum mismatch); "
                f"rebuild it with 'vmrunner image build --force {image.name}'"
            )
    with image.rootfs.open("rb") as fh:
        fh.seek(EXT4_MAGIC_OFFSET)
        if fh.read(2) != b"\x53\xef":
            raise ImageError(
                f"image {image.name}: {image.rootfs} is not an ext4 disk (corrupt); "
                f"rebuild it with 'vmrunner image build --force {image.name}'"
            )


def write_manifest(
    entry: Path, name: str, digest: str, kernel_version: str, seconds: float
) -> None:
    manifest = {
        "name": name,
        "digest": digest,
        "kernel_version": kernel_version,
        "built_at": time.time(),
        "build_seconds": round(seconds, 3),
        "sha256": {p: _sha256(entry / p) for p in ("vmlinuz", "initrd.cpio")},
    }
    (entry / "manifest.json").write_text(json.dumps(manifest, indent=2))


def load_image(entry: Path, *, verify: bool = True) -> Image:
    """Read a cache entry; raise ``ImageError`` if it is missing or corrupt."""
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
        image = Image(
            name=str(manifest["name"]),
            digest=str(manifest["digest"]),
            path=entry,
            kernel_version=str(manifest["kernel_version"]),
            built_at=float(manifest["built_at"]),
            build_seconds=float(manifest["build_seconds"]),
        )
        hashes = {str(k): str(v) for k, v in dict(manifest["sha256"]).items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ImageError(f"image at {entry}: unreadable manifest ({exc})") from exc
    if verify:
        verify_image(image, hashes)
    return image


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
        from vmrunner.images.builder import build_image

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
