"""An honest KVM check, in three levels, cached for the host's uptime.

1. ``present``: /dev/kvm exists and opens read-write.
2. ``api``: the KVM API answers (``KVM_GET_API_VERSION`` is 12, a VM can be created).
3. ``functional``: a minimal guest runs at hardware speed: a 20-million-iteration
   loop finishes within the deadline (milliseconds on hardware virtualisation;
   tens of seconds on a hypervisor that emulates the guest instruction by
   instruction). Only this level lets vmrunner use KVM.

The probe runs in a child process (``kvm_probe``) that is killed at the deadline,
so a hanging guest costs at most ``deadline`` seconds, once per boot of the host.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from vmrunner.errors import KvmUnavailableError
from vmrunner.procs import run_probe
from vmrunner.vm.machine import Accel

DEADLINE_S = 5.0
SPEED_ITERATIONS = 20_000


@dataclass(frozen=True)
class KvmStatus:
    present: bool
    api: bool
    functional: bool
    api_version: int | None
    detail: str
    instructions_per_second: float | None = None
    boot_id: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _run_probe(iterations: int, timeout: float) -> tuple[int | None, dict[str, object]]:
    status, out = run_probe(
        [sys.executable, "-m", "vmrunner.vm.kvm_probe", str(iterations)], timeout=timeout
    )
    try:
        data = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    except (ValueError, IndexError):
        data = {"error": out.strip()[-300:]}
    return status, data if isinstance(data, dict) else {}


def probe_kvm(device: Path = Path("/dev/kvm"), deadline: float = DEADLINE_S) -> KvmStatus:
    """Run the three-level check now (no cache)."""
    boot_id = _boot_id()
    if not device.exists():
        return KvmStatus(False, False, False, None, f"{device} does not exist", boot_id=boot_id)
    try:
        os.close(os.open(device, os.O_RDWR))
    except OSError as exc:
        return KvmStatus(
            False, False, False, None, f"{device} cannot be opened: {exc.strerror}", boot_id=boot_id
        )
    status, small = _run_probe(SPEED_ITERATIONS, deadline)
    if status != 0 or "api" not in small:
        why = small.get("error") or ("timed out" if status is None else f"exit status {status}")
        return KvmStatus(
            True, False, False, None, f"the KVM API does not answer: {why}", boot_id=boot_id
        )
    api_version = int(str(small["api"]))
    seconds = float(str(small.get("seconds", 0.0))) or 1e-9
    ips = SPEED_ITERATIONS * 2 / seconds
    status, big = _run_probe(20_000_000, deadline)
    if status == 0 and big.get("exit_reason") == 5:
        return KvmStatus(True, True, True, api_version,
                         f"a minimal guest ran 20M loop iterations in {float(str(big['seconds'])):.3f} s",
                         ips, boot_id)  # fmt: skip
    why = (
        f"did not finish within {deadline:.0f} s"
        if status is None
        else f"failed ({big.get('error') or big.get('exit_reason')})"
    )
    detail = (
        f"/dev/kvm is present and the KVM API answers (version {api_version}), but a minimal guest "
        f"runs at about {ips / 1e6:.1f} million instructions per second, not hardware speed: its "
        f"20M-iteration loop {why}. A Linux guest would hang in early boot under this KVM "
        "(a software hypervisor that emulates the guest)."
    )
    return KvmStatus(True, True, False, api_version, detail, ips, boot_id)


def kvm_status(cache_file: Path | None, *, refresh: bool = False) -> KvmStatus:
    """The KVM status, from ``cache_file`` if it was measured since the host last booted."""
    boot_id = _boot_id()
    if cache_file is not None and not refresh:
        try:
            data = json.loads(cache_file.read_text())
            if data.get("boot_id") == boot_id and boot_id:
                return KvmStatus(**data)
        except (OSError, ValueError, TypeError):
            pass
    status = probe_kvm()
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        # one temporary name per process and thread: runs of one worker check at once
        tmp = cache_file.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(status.to_dict()))
        tmp.replace(cache_file)
    return status


def choose_accel(requested: str, cache_file: Path | None) -> tuple[Accel, KvmStatus | None]:
    """Resolve ``auto|kvm|tcg`` to an accelerator; ``kvm`` raises at once if KVM is not functional."""
    if requested == "tcg":
        return Accel.TCG, None
    status = kvm_status(cache_file)
    if status.functional:
        return Accel.KVM, status
    if requested == "kvm":
        raise KvmUnavailableError(
            f"--accel kvm: KVM is not functional on this host. {status.detail}"
        )
    return Accel.TCG, status
