"""How QEMU is confined: its seccomp sandbox and its share of the host's disk.

QEMU starts with a scrubbed environment (``procs.vmm_env``) and ``-sandbox on`` (no
obsolete system calls, no resource control, no new processes unless it migrates a
snapshot through ``exec:``, no privilege changes). ``run_as`` (``-runas``) is supported
by the argv builder but vmrunner does not use it: changing credentials clears QEMU's
parent-death signal, and QEMU must die with vmrunner.

The disk cap: QEMU (and whatever it starts: the ``cat`` of a snapshot migration) runs
with ``RLIMIT_FSIZE`` at the VM's cap and ``SIGXFSZ`` ignored, so no file it writes --
the overlay disk a guest fills, the console log, the VMM log -- grows past the cap: a
write beyond it fails (``EFBIG``; the guest sees an I/O error on its disk) and QEMU
goes on. A VM starts only when the host has at least its cap free where its files go.
The argv builder is pure; the limit is applied in the child between fork and exec.
"""

from __future__ import annotations

import os
import resource
import signal
from collections.abc import Callable
from pathlib import Path

from vmrunner.errors import VmStartError

MIB = 1 << 20
# A snapshot migration writes the guest's RAM to one file: the cap of a VM that saves
# one is never below its memory and this much device state.
SNAPSHOT_STATE_SLACK = 64 * MIB


def sandbox_args(*, spawn: bool, run_as: str | None) -> list[str]:
    """QEMU's seccomp sandbox (pure): no obsolete system calls, no resource control, no
    new processes unless ``spawn``, no privilege changes -- except QEMU's own drop to
    ``run_as`` (``-runas``) after it opened its files, which ``elevateprivileges=deny``
    would kill; once dropped, it cannot regain them anyway."""
    elevate = "allow" if run_as else "deny"
    args = [
        "-sandbox",
        f"on,obsolete=deny,elevateprivileges={elevate},spawn={'allow' if spawn else 'deny'},"
        "resourcecontrol=deny",
    ]
    return [*args, "-runas", run_as] if run_as else args


def file_size_cap(disk_max_bytes: int, memory_mib: int, *, saves_snapshot: bool) -> int:
    """The ``RLIMIT_FSIZE`` of a VM's QEMU (pure): its disk cap, raised to its memory
    (plus device state) when it saves a snapshot, whose state file holds the RAM."""
    if not saves_snapshot:
        return disk_max_bytes
    return max(disk_max_bytes, memory_mib * MIB + SNAPSHOT_STATE_SLACK)


def limit_file_size(cap: int) -> Callable[[], None]:
    """What the VMM's child runs before exec: no file it writes may pass ``cap`` bytes
    (``RLIMIT_FSIZE``, soft and hard, so it cannot raise it) and a write that would gets
    ``EFBIG`` instead of the ``SIGXFSZ`` that would kill it (an ignored signal stays
    ignored across exec). Async-signal-safe enough for ``preexec_fn``: two system calls."""

    def setup() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))

    return setup


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system of ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def require_free(path: Path, cap: int) -> None:
    """Raise ``VmStartError`` unless the file system of ``path`` has ``cap`` bytes free,
    naming the directory, what is free and the setting that asks for it."""
    free = free_bytes(path)
    if free < cap:
        raise VmStartError(
            f"not enough free disk for a VM in {path}: {free // MIB} MiB free, and a VM may "
            f"write up to {cap // MIB} MiB (vm_disk_max_mib); free some space or lower it"
        )
