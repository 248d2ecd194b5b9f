"""A small busybox initramfs: the virtio modules and a shell-script init.

The archive is written here as an uncompressed ``newc`` cpio (the kernel need
not decompress it, which matters under software emulation). Module dependencies
come from each module's own ``.modinfo`` ``depends=`` field, so the host needs no
kmod.
"""

from __future__ import annotations

import io
import stat
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from vmrunner.errors import ImageBuildError
from vmrunner.procs import require_tool

# What the guest needs before the root disk is mounted; dependencies are added.
INITRAMFS_MODULES = (
    "virtio_pci",
    "virtio_blk",
    "virtio_console",
    "virtio_net",
    "virtio-rng",
)
BUSYBOX_APPLETS = (
    "sh",
    "mount",
    "umount",
    "insmod",
    "sleep",
    "cat",
    "poweroff",
    "switch_root",
    "mkdir",
)


def module_index(modules_dir: Path) -> dict[str, Path]:
    """Map module name (``-`` and ``_`` folded to ``_``) to its ``.ko`` path."""
    index: dict[str, Path] = {}
    for ko in modules_dir.rglob("*.ko"):
        index[ko.stem.replace("-", "_")] = ko
    return index


def module_depends(ko: Path) -> list[str]:
    """The ``depends=`` list in a module's ``.modinfo`` (names with ``_``)."""
    data = ko.read_bytes()
    marker = b"\0depends="
    at = data.find(marker)
    if at < 0:
        return []
    end = data.find(b"\0", at + len(marker))
    value = data[at + len(marker) : end].decode("ascii", "replace")
    return [d.replace("-", "_") for d in value.split(",") if d]


def resolve_modules(wanted: Iterable[str], index: dict[str, Path]) -> list[Path]:
    """``wanted`` plus their dependencies, dependencies first (load order)."""
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen:
            return
        seen.add(name)
        ko = index.get(name)
        if ko is None:
            return  # built into the kernel
        for dep in module_depends(ko):
            visit(dep)
        order.append(ko)

    for name in wanted:
        if name.replace("-", "_") not in index:
            raise ImageBuildError(f"kernel module {name} not found in the kernel package")
        visit(name)
    return order


class _Cpio:
    """A writer for the ``newc`` cpio format the kernel unpacks."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(
        self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        namez = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(namez), 0]
        self.ino += 1
        self.buf.write(b"070701" + b"".join(b"%08X" % f for f in fields) + namez)
        self._pad()
        self.buf.write(data)
        self._pad()

    def _pad(self) -> None:
        self.buf.write(b"\0" * (-self.buf.tell() % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def build_initramfs(modules_dir: Path, out: Path, busybox: Path | None = None) -> list[str]:
    """Write the initramfs to ``out``; return the module file names it loads, in order."""
    busybox = busybox or Path(require_tool("busybox", "install busybox-static"))
    modules = resolve_modules(INITRAMFS_MODULES, module_index(modules_dir))
    init = resources.files("vmrunner.images").joinpath("guestfiles/initramfs-init").read_bytes()
    cpio = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "newroot", "modules"):
        cpio.directory(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in BUSYBOX_APPLETS:
        cpio.symlink(f"bin/{applet}", "busybox")
    cpio.file("init", init, 0o755)
    names = [ko.name for ko in modules]
    for ko in modules:
        cpio.file(f"modules/{ko.name}", ko.read_bytes())
    cpio.file("modules.order", ("\n".join(names) + "\n").encode())
    out.write_bytes(cpio.finish())
    return names
