"""A per-host limit on running VMs, shared by every vmrunner process: slots are lock files.

Slot ``i`` is ``<dir>/slot-<i>.lock``; a VM holds one by an exclusive ``flock`` on it from
before its VMM starts until it is gone. The kernel drops the lock when the holder dies, so a
killed vmrunner never leaks a slot and nothing needs reaping. A VM that finds every slot
taken waits (polling, cancellable) until one is free: runs beyond the limit queue instead
of overloading the host, whatever a workflow's matrix or ``max-parallel`` asks for.

The directory is host-wide (``/run/vmrunner/vm-slots`` as root, else a per-user one in the
temporary directory), not per state directory: the limit is about the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

POLL_S = 0.25
HOST_MEMORY_SHARE = 0.75


def default_dir() -> Path:
    """Where the slots of this host live, for this user."""
    if os.geteuid() == 0:
        return Path("/run/vmrunner/vm-slots")
    return Path(tempfile.gettempdir()) / f"vmrunner-{os.getuid()}" / "vm-slots"


def auto_limit(memory_mib: int, meminfo: Path = Path("/proc/meminfo")) -> int:
    """How many VMs of ``memory_mib`` fit in 75% of the host's memory (at least 1)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                total_mib = int(line.split()[1]) // 1024
                return max(1, int(total_mib * HOST_MEMORY_SHARE) // max(1, memory_mib))
    except (OSError, ValueError, IndexError):
        pass
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class VmSlots:
    """``limit`` slots in ``directory``."""

    limit: int
    directory: Path

    def try_acquire(self) -> IO[bytes] | None:
        """A held slot (an open, locked file: close it to release), or None when all are taken."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for i in range(self.limit):
            fh = open(self.directory / f"slot-{i}.lock", "ab")  # noqa: SIM115 (held by the caller)
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            return fh
        return None

    async def acquire(self, on_wait: Callable[[], None] | None = None) -> IO[bytes]:
        """A held slot, waiting for one (cancellable); ``on_wait`` is called once if every
        slot is taken on the first try. Close the file to release it."""
        fh = self.try_acquire()
        if fh is None and on_wait is not None:
            on_wait()
        while fh is None:
            await asyncio.sleep(POLL_S)
            fh = self.try_acquire()
        return fh

    @contextlib.asynccontextmanager
    async def hold(self, on_wait: Callable[[], None] | None = None) -> AsyncIterator[None]:
        """Hold a slot for the body (see :meth:`acquire`)."""
        fh = await self.acquire(on_wait)
        try:
            yield
        finally:
            fh.close()
