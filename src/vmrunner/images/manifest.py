"""One built image on disk: the :class:`Image` record and its ``manifest.json``.

An entry is a directory ``{rootfs.raw, vmlinuz, initrd.cpio, manifest.json}``. The
manifest names the image and its recipe digest and records the SHA-256 of the kernel
and initramfs; :func:`load_image` reads it back and (by default) verifies the parts.
Below both :mod:`.cache` (which finds and locks entries) and :mod:`.builder` (which
writes them); imports neither.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vmrunner.errors import ImageError

# Called with one line of human-readable build progress.
Progress = Callable[[str], None]

EXT4_MAGIC_OFFSET = 1080


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
