"""The initramfs writer and module resolution, on synthetic modules (no kernel needed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from vmrunner.errors import ImageBuildError
from vmrunner.images.initramfs import _Cpio, module_depends, module_index, resolve_modules


def _ko(path: Path, depends: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF...\0license=GPL\0depends=" + depends.encode() + b"\0name=x\0")


@pytest.fixture
def mods(tmp_path: Path) -> Path:
    root = tmp_path / "modules"
    _ko(root / "kernel/drivers/virtio/virtio.ko", "virtio_ring")
    _ko(root / "kernel/drivers/virtio/virtio_ring.ko", "")
    _ko(root / "kernel/drivers/virtio/virtio_pci.ko", "virtio,virtio_ring,builtin_thing")
    _ko(root / "kernel/drivers/char/hw_random/virtio-rng.ko", "virtio")
    return root


def test_depends_are_read_from_modinfo(mods: Path) -> None:
    assert module_depends(mods / "kernel/drivers/virtio/virtio_pci.ko") == [
        "virtio",
        "virtio_ring",
        "builtin_thing",
    ]
    assert module_depends(mods / "kernel/drivers/virtio/virtio_ring.ko") == []


@pytest.mark.parametrize(
    ("wanted", "order"),
    [
        (["virtio_pci"], ["virtio_ring.ko", "virtio.ko", "virtio_pci.ko"]),
        (
            ["virtio-rng", "virtio_pci"],
            ["virtio_ring.ko", "virtio.ko", "virtio-rng.ko", "virtio_pci.ko"],
        ),
        (["virtio_ring"], ["virtio_ring.ko"]),
    ],
)
def test_dependencies_come_first(mods: Path, wanted: list[str], order: list[str]) -> None:
    assert [p.name for p in resolve_modules(wanted, module_index(mods))] == order


def test_unknown_module_is_a_clear_error(mods: Path) -> None:
    with pytest.raises(ImageBuildError, match="virtio_gpu"):
        resolve_modules(["virtio_gpu"], module_index(mods))


def test_cpio_is_readable_by_cpio(tmp_path: Path) -> None:
    c = _Cpio()
    c.directory("bin")
    c.file("bin/hello", b"#!/bin/sh\necho hi\n", 0o755)
    c.symlink("bin/sh", "busybox")
    c.file("odd", b"x" * 5)
    archive = tmp_path / "a.cpio"
    archive.write_bytes(c.finish())
    listing = subprocess.run(
        ["cpio", "-itv"], stdin=archive.open("rb"), capture_output=True, text=True, check=True
    )
    names = [
        line.split()[-1] if "->" not in line else line.split()[-3]
        for line in listing.stdout.splitlines()
    ]
    assert names == ["bin", "bin/hello", "bin/sh", "odd"]
    assert "rwxr-xr-x" in listing.stdout.splitlines()[1]
