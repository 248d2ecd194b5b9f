"""What QEMU gets as open file descriptors instead of paths.

QEMU may run as an unprivileged user (:mod:`.sandbox`) that cannot traverse vmrunner's
0700 state directory, so it opens no file of the VM by name. vmrunner opens each one and
QEMU inherits the descriptor (``pass_fds``: the same number in QEMU):

* QMP and the guest agent's channel: one end of a socket pair each
  (``-chardev socket,fd=N``); vmrunner keeps the other end, so no socket file exists;
* kernel and initrd: ``/proc/self/fd/N`` (QEMU re-opens the file through the magic link,
  without traversing any directory; a file QEMU's user may not read is copied into a
  memfd first);
* the image's raw root disk (read-only), the VM's qcow2 overlay (read-write) and the
  console log (append): ``-add-fd`` into fd sets, which QEMU opens as ``/dev/fdset/N``
  (each labelled with its file's path, for whoever reads QEMU's command line).
  The overlay's backing node is given explicitly, so QEMU never opens its backing path;
* a snapshot's state to restore: ``-incoming fd:N`` (:mod:`.qemu`).

The same path serves every user: QEMU as vmrunner's own user takes the same descriptors.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

ROOTFS_SET, OVERLAY_SET, CONSOLE_SET = 1, 2, 3
"""The fd-set ids (``-add-fd set=``) of the root disk, the overlay and the console log."""


@dataclass(frozen=True)
class ChannelFds:
    """QEMU's descriptors for the console log (write, append) and QMP and agent sockets."""

    console: int
    qmp: int
    agent: int


@dataclass(frozen=True)
class DiskFds:
    """QEMU's descriptors for the kernel, the initrd, the raw root disk and the overlay."""

    kernel: int
    initrd: int
    rootfs: int
    overlay: int


# Stand-ins for the machine's shape (the snapshot key): the numbers differ per launch.
SHAPE_CHANNELS = ChannelFds(console=3, qmp=4, agent=5)
SHAPE_DISKS = DiskFds(kernel=6, initrd=7, rootfs=8, overlay=9)


def fd_path(fd: int) -> str:
    """The name under which QEMU re-opens its inherited descriptor ``fd`` (pure)."""
    return f"/proc/self/fd/{fd}"


def fdset_args(fd: int, fdset: int, label: Path) -> list[str]:
    """``-add-fd`` putting descriptor ``fd`` into fd set ``fdset`` (pure). ``label``, the
    file's path, is only a note for people and tools reading QEMU's command line (QEMU
    never opens it)."""
    opaque = str(label).replace(",", ",,")  # QEMU's option syntax escapes a comma so
    return ["-add-fd", f"fd={fd},set={fdset},opaque={opaque}"]


def others_may_read(path: Path) -> bool:
    """True if ``path`` is a file any user may read (the ``o+r`` bit)."""
    return bool(path.stat().st_mode & stat.S_IROTH)


class FdBundle:
    """The descriptors of one QEMU launch.

    ``inherit`` lists what QEMU inherits; vmrunner closes its copies once QEMU has
    started (:meth:`close`), so that a socket pair reports EOF when QEMU
    exits. Host ends of socket pairs are returned to the caller, who owns them.
    :meth:`close` is idempotent.
    """

    def __init__(self) -> None:
        self.inherit: list[int] = []

    def _keep(self, fd: int) -> int:
        self.inherit.append(fd)
        return fd

    def open(self, path: Path, flags: int, mode: int = 0o600) -> int:
        """Open ``path`` with ``flags`` (close-on-exec: only ``pass_fds`` passes it on)."""
        return self._keep(os.open(path, flags | os.O_CLOEXEC, mode))

    def readable(self, path: Path) -> int:
        """``path`` open for reading by QEMU through :func:`fd_path`: the file itself
        when any user may read it, else a memfd copy of it (a memfd any user may open)."""
        if others_may_read(path):
            return self.open(path, os.O_RDONLY)
        fd = self._keep(os.memfd_create(path.name, os.MFD_CLOEXEC))
        with path.open("rb") as src, open(os.dup(fd), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        return fd

    def socket_pair(self) -> tuple[socket.socket, int]:
        """A connected stream socket pair: vmrunner's end, and the descriptor for QEMU."""
        host, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        return host, self._keep(child.detach())

    def close(self) -> None:
        """Close vmrunner's copies of what QEMU inherits (or would have)."""
        fds, self.inherit = self.inherit, []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
