"""Who owns a run: this host's name and a process identity that survives pid reuse.

An owner is ``"PID:START_TICKS:BOOT_ID"``. On the host that wrote it, the owner is alive
while a process with that pid exists, started at the same tick, since the same boot.
Another host cannot judge it (that is what leases and heartbeats are for).
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path

from vmrunner.procs import pid_alive, proc_start_ticks


@functools.cache
def this_host() -> str:
    """This host's name, as runs and concurrency slots record it."""
    return socket.gethostname()


@functools.cache
def boot_id() -> str:
    """The kernel's id of this boot (changes on every reboot)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def owner_of(pid: int) -> str:
    """The owner identity of process ``pid`` (this process by default)."""
    return f"{pid}:{proc_start_ticks(pid) or 0}:{boot_id()}"


def this_owner() -> str:
    return owner_of(os.getpid())


def owner_alive(owner: str) -> bool:
    """True if ``owner`` (written on this host) is a process still running."""
    pid_text, _, rest = owner.partition(":")
    ticks, _, boot = rest.partition(":")
    if boot != boot_id() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    return pid_alive(pid) and str(proc_start_ticks(pid) or 0) == ticks
