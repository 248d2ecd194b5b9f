"""Snapshots of a freshly booted VM, to start the next identical VM in a fraction of the time.

A snapshot is taken once per (image, machine shape, QEMU build): right after a
cold boot's agent hello, the VM is paused, its RAM and device state are migrated
to a file (``exec:cat > state``; QEMU 7.2 has no ``file:`` target), and its
overlay disk is copied next to it (after migration has flushed it). Every later
VM of the same shape starts from a copy of that overlay with ``-incoming``, so it
is exactly the pristine, just-booted machine, never one that ran a command.
After a restore the host resets the guest's wall clock and mixes fresh entropy
into its random pool (``settime``, ``seed``).

Layout: ``<cache>/snapshots/<key>/{state, overlay.qcow2, meta.json}``, written
under a temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from vmrunner.guest.protocol import Hello

SNAPSHOT_FORMAT = "1"


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
