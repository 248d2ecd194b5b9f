"""On-disk records of live VMs and temporary directories, so gc can reap them.

Every VM gets its own directory ``<state>/vms/<id>/`` holding all its files
(overlay disk, sockets, console log, VMM log) and ``owner.json``: the pid and
start time of the vmrunner process that owns it, and, once started, the pid,
process group and start time of the VMM. A directory whose owner is gone is
debris: ``reap`` kills its VMM group (after checking the pid was not reused) and
removes the directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vmrunner.procs import kill_group, pid_alive, proc_start_ticks
from vmrunner.vm import netns

OWNER_FILE = "owner.json"


@dataclass
class VmRecord:
    """What is recorded about one VM directory."""

    path: Path
    owner_pid: int
    owner_ticks: int | None
    created: float
    vmm_pid: int | None = None
    vmm_ticks: int | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def save(self) -> None:
        data = {
            "owner_pid": self.owner_pid,
            "owner_ticks": self.owner_ticks,
            "created": self.created,
            "vmm_pid": self.vmm_pid,
            "vmm_ticks": self.vmm_ticks,
            "extra": self.extra,
        }
        tmp = self.path / f".{OWNER_FILE}.tmp"
        tmp.write_text(json.dumps(data))
        tmp.replace(self.path / OWNER_FILE)

    @classmethod
    def load(cls, path: Path) -> VmRecord | None:
        try:
            data = json.loads((path / OWNER_FILE).read_text())
            return cls(
                path=path,
                owner_pid=int(data["owner_pid"]),
                owner_ticks=data.get("owner_ticks"),
                created=float(data["created"]),
                vmm_pid=data.get("vmm_pid"),
                vmm_ticks=data.get("vmm_ticks"),
                extra=dict(data.get("extra") or {}),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def owner_alive(self) -> bool:
        return pid_alive(self.owner_pid) and proc_start_ticks(self.owner_pid) == self.owner_ticks


def new_record_dir(parent: Path, prefix: str = "vm") -> VmRecord:
    """Create a fresh directory under ``parent`` owned by this process, and record it."""
    parent.mkdir(parents=True, exist_ok=True)
    path = parent / f"{prefix}-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}-{os.urandom(3).hex()}"
    path.mkdir(mode=0o700)
    rec = VmRecord(
        path=path,
        owner_pid=os.getpid(),
        owner_ticks=proc_start_ticks(os.getpid()),
        created=time.time(),
    )
    rec.save()
    return rec


@contextlib.contextmanager
def record_dir(parent: Path, prefix: str = "vm") -> Iterator[VmRecord]:
    """A recorded directory that is removed (with its VMM, if any) on exit."""
    rec = new_record_dir(parent, prefix)
    try:
        yield rec
    finally:
        reap_record(rec)


def _vmm_matches(rec: VmRecord) -> bool:
    """True if the recorded VMM pid is still the process we started (not a reused pid)."""
    if rec.vmm_pid is None or not pid_alive(rec.vmm_pid):
        return False
    return rec.vmm_ticks is None or proc_start_ticks(rec.vmm_pid) == rec.vmm_ticks


def reap_record(rec: VmRecord, grace: float = 1.0) -> None:
    """Kill the record's VMM process group (if it is still ours) and remove the directory."""
    if _vmm_matches(rec) and rec.vmm_pid is not None:
        kill_group(rec.vmm_pid, grace=grace)
    link = rec.extra.get("link")
    if link and Path(link).is_symlink():
        Path(link).unlink(missing_ok=True)
    if rec.extra.get("netns"):
        netns.cleanup(rec)
    shutil.rmtree(rec.path, ignore_errors=True)


@dataclass(frozen=True)
class GcReport:
    """What ``collect`` removed."""

    vm_dirs: list[str]
    vmm_pids: list[int]
    tmp_dirs: list[str]

    def to_dict(self) -> dict[str, object]:
        return {"vm_dirs": self.vm_dirs, "vmm_pids": self.vmm_pids, "tmp_dirs": self.tmp_dirs}


def collect(parents: list[Path], tmp_globs: list[tuple[Path, str]]) -> GcReport:
    """Reap every recorded directory under ``parents`` whose owner process is gone,
    and every ``<dir>/.tmp-<pid>-*`` matched by ``tmp_globs`` whose pid is gone.

    Safe to run while other vmrunner processes work: what a live owner holds is
    left alone.
    """
    vm_dirs: list[str] = []
    pids: list[int] = []
    for parent in parents:
        if not parent.is_dir():
            continue
        for path in sorted(parent.iterdir()):
            if not path.is_dir():
                continue
            rec = VmRecord.load(path)
            if rec is None:
                # A directory being created right now has no owner.json for a moment.
                if time.time() - path.stat().st_mtime > 60:
                    shutil.rmtree(path, ignore_errors=True)
                    vm_dirs.append(str(path))
                continue
            if rec.owner_alive():
                continue
            if _vmm_matches(rec) and rec.vmm_pid is not None:
                pids.append(rec.vmm_pid)
            reap_record(rec, grace=0.5)
            vm_dirs.append(str(path))
    tmp_dirs: list[str] = []
    for base, pattern in tmp_globs:
        for path in base.glob(pattern):
            try:
                pid = int(path.name.split("-")[1])
            except (IndexError, ValueError):
                continue
            if not pid_alive(pid):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                tmp_dirs.append(str(path))
    return GcReport(vm_dirs=vm_dirs, vmm_pids=pids, tmp_dirs=tmp_dirs)
