"""Snapshots of a freshly booted VM, to start the next identical VM in a fraction of the time.

A snapshot is taken once per (image, machine shape, QEMU build): right after a
cold boot's agent hello, the VM is paused, its RAM and device state are migrated
to a file (QEMU 7.2 has no ``file:`` target: vmrunner opens the file and hands QEMU the
descriptor over QMP, ``getfd`` then ``migrate fd:``, so QEMU opens no path and starts no
process), and its overlay disk is copied next to it (after migration has flushed it).
Every later VM of the same shape starts from a copy of that overlay with ``-incoming
fd:N`` (the state file, opened by vmrunner and inherited), so it
is exactly the pristine, just-booted machine, never one that ran a command.
After a restore the host resets the guest's wall clock and mixes fresh entropy
into its random pool (``settime``, ``seed``).

Layout: ``<cache>/snapshots/<key>/{state, overlay.qcow2, meta.json}``, written
under a temporary name and renamed into place.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from qemu.qmp import QMPClient

from vmrunner.errors import VmStartError
from vmrunner.guest.protocol import Hello

SNAPSHOT_FORMAT = "2"  # 2: disks and channels passed as descriptors
MIGRATE_FD_NAME = "vmrunner-snapshot"
MIGRATE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Snapshot:
    path: Path
    hello: Hello

    @property
    def state(self) -> Path:
        return self.path / "state"

    @property
    def overlay(self) -> Path:
        return self.path / "overlay.qcow2"


def snapshot_key(argv: list[str], image_digest: str, qemu_binary: str) -> str:
    """A key over everything that must match for a restore: argv shape, image, QEMU build."""
    st = Path(qemu_binary).stat()
    h = hashlib.sha256()
    for part in (
        SNAPSHOT_FORMAT,
        image_digest,
        qemu_binary,
        str(st.st_size),
        str(st.st_mtime_ns),
        *argv,
    ):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:24]


def find(root: Path, key: str) -> Snapshot | None:
    """The snapshot for ``key``, or None if there is none or it is incomplete."""
    path = root / key
    try:
        meta = json.loads((path / "meta.json").read_text())
        hello = Hello(**meta["hello"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    snap = Snapshot(path, hello)
    if not (snap.state.is_file() and snap.overlay.is_file()):
        return None
    return snap


def begin(root: Path) -> Path:
    """A temporary directory to write a new snapshot into (gc removes it if we die)."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{os.getpid()}-{os.urandom(4).hex()}"
    tmp.mkdir()
    return tmp


def commit(root: Path, key: str, tmp: Path, hello: Hello) -> None:
    """Move a complete snapshot into place; if another process won the race, drop ours."""
    meta = {
        "hello": {
            f: getattr(hello, f) for f in ("proto", "agent_version", "uptime_s", "kernel", "pid")
        }
    }
    (tmp / "meta.json").write_text(json.dumps(meta))
    try:
        tmp.rename(root / key)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


async def migrate_to_file(qmp: QMPClient, target: Path, timeout: float = MIGRATE_TIMEOUT_S) -> None:
    """Migrate the (paused) VM's RAM and device state into ``target``, created here (0600):
    QEMU gets the open descriptor over QMP (``getfd``) and writes to it. Returns once the
    migration completed; raises ``VmStartError`` when it failed or took over ``timeout``
    s (``QMPError``, ``OSError`` for the channel)."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        qmp.send_fd_scm(fd)
        await qmp.execute("getfd", {"fdname": MIGRATE_FD_NAME})
    finally:
        os.close(fd)  # QEMU has its own copy now
    await qmp.execute("migrate", {"uri": f"fd:{MIGRATE_FD_NAME}"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = await qmp.execute("query-migrate")
        state = info.get("status") if isinstance(info, dict) else None
        if state == "completed":
            return
        if state in ("failed", "cancelled"):
            raise VmStartError(f"snapshot migration {state}: {info}")
        await asyncio.sleep(0.05)
    raise VmStartError(f"snapshot migration did not complete within {timeout:.0f} s")
