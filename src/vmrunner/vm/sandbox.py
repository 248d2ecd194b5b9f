"""How QEMU is confined: its user, its seccomp sandbox and its share of the host's disk.

QEMU starts with a scrubbed environment (``procs.vmm_env``) and ``-sandbox on`` (no
obsolete system calls, no resource control, no new processes, no privilege changes).

Its user (the ``qemu_user`` setting, see :func:`resolve_qemu_user`): when vmrunner runs as
root and the system user ``vmrunner-qemu`` exists (``scripts/bootstrap.sh`` makes it),
QEMU runs as that user, with only that user's groups (``kvm``, for ``/dev/kvm``). The
drop happens in the child between fork and exec -- network namespace entered first
(``setns`` needs root), then groups, gid, uid -- and only THEN is the parent-death signal
set (``procs.spawn_vmm``): the kernel clears it whenever credentials change, and QEMU
must die with vmrunner even after ``kill -9``. QEMU's ``-runas`` is never used for that
reason. The dropped user cannot traverse vmrunner's 0700 state directory, so QEMU opens
no path of its own: every file and socket is passed as a descriptor (:mod:`.vmfds`).

The disk cap: QEMU runs with ``RLIMIT_FSIZE`` at the VM's cap and ``SIGXFSZ`` ignored,
so no file it writes -- the overlay disk a guest fills, the console log, a snapshot's
state, the VMM log -- grows past the cap: a write beyond it fails (``EFBIG``; the guest
sees an I/O error on its disk) and QEMU goes on. A VM starts only when the host has at
least its cap free where its files go. The argv builder is pure; the limit and the
credentials are applied in the child between fork and exec.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import resource
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vmrunner.errors import ConfigError, VmStartError

MIB = 1 << 20
# A snapshot migration writes the guest's RAM to one file: the cap of a VM that saves
# one is never below its memory and this much device state.
SNAPSHOT_STATE_SLACK = 64 * MIB


def sandbox_args() -> list[str]:
    """QEMU's seccomp sandbox (pure): no obsolete system calls, no resource control, no
    new processes (snapshots migrate through a passed descriptor, not ``exec:``), no
    privilege changes (QEMU's user was set before it started)."""
    return [
        "-sandbox",
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    ]


DEFAULT_QEMU_USER = "vmrunner-qemu"
"""The system user ``qemu_user = "auto"`` picks when vmrunner runs as root."""
SAME_USER = ("", "self")
"""``qemu_user`` values for: QEMU runs as the invoking user."""


@dataclass(frozen=True)
class Credentials:
    """Who QEMU runs as: a user, its primary group and its supplementary groups."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def _credentials(name: str) -> Credentials | None:
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    groups = tuple(sorted(set(os.getgrouplist(name, pw.pw_gid))))
    return Credentials(name, pw.pw_uid, pw.pw_gid, groups)


def resolve_qemu_user(setting: str, euid: int | None = None) -> Credentials | None:
    """The credentials QEMU drops to for the ``qemu_user`` setting, or None: it runs as
    the invoking user. ``auto``: ``vmrunner-qemu`` when vmrunner runs as root and that
    user exists. ``""``/``self``: never drop. A user name: that user (None when it is
    the invoking user). Raises ``ConfigError`` for a missing user, or a named user other
    than the invoking one when vmrunner is not root (it could not switch to it)."""
    euid = os.geteuid() if euid is None else euid
    if setting in SAME_USER:
        return None
    if setting == "auto":
        creds = _credentials(DEFAULT_QEMU_USER) if euid == 0 else None
        return creds if creds is None or creds.uid != euid else None
    creds = _credentials(setting)
    if creds is None:
        raise ConfigError(f"qemu_user: there is no user {setting!r} on this host "
                          "(scripts/bootstrap.sh creates vmrunner-qemu)")  # fmt: skip
    if creds.uid == euid:
        return None
    if euid != 0:
        raise ConfigError(f"qemu_user: QEMU can run as {setting!r} only when vmrunner runs as "
                          "root; unset it (or use 'self') to run QEMU as yourself")  # fmt: skip
    return creds


def describe(creds: Credentials | None) -> str:
    """``name (uid N)`` of the user QEMU runs as, for logs and documents."""
    if creds is not None:
        return f"{creds.name} (uid {creds.uid})"
    uid = os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here, not in the forked child


def enter_netns(fd: int) -> None:
    """Move the calling process into the network namespace open at ``fd`` (needs root)."""
    if _LIBC.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def drop_to(creds: Credentials) -> None:
    """Become ``creds`` for good: groups, then gid, then uid (real, effective, saved)."""
    os.setgroups(list(creds.groups))
    os.setresgid(creds.gid, creds.gid, creds.gid)
    os.setresuid(creds.uid, creds.uid, creds.uid)


def vmm_child_setup(
    cap: int, creds: Credentials | None, netns_fd: int | None = None
) -> Callable[[], None]:
    """What QEMU's child runs between fork and exec, in this order: enter the network
    namespace at ``netns_fd`` (if any), cap file sizes (:func:`limit_file_size`), drop to
    ``creds`` (if any). ``spawn_vmm`` sets the parent-death signal after it."""
    limit = limit_file_size(cap)

    def setup() -> None:
        if netns_fd is not None:
            enter_netns(netns_fd)
        limit()
        if creds is not None:
            drop_to(creds)

    return setup


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
