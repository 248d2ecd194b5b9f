"""The service layer: what the CLI (and later the HTTP API and MCP tools) call.

Each function takes the ``Settings`` and a typed request and returns a typed
result; none prints. Harness failures raise from ``vmrunner.errors``; a command
that fails in the guest is a result, not an exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shlex
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from vmrunner import learn_service
from vmrunner.config import Settings
from vmrunner.errors import ConfigError, VmStartError
from vmrunner.images.builder import MMDEBSTRAP_TMP_PREFIX
from vmrunner.images.cache import Image, ImageCache
from vmrunner.learning import Observation
from vmrunner.vm.kvm import KvmStatus, choose_accel, kvm_status
from vmrunner.vm.machine import (
    Accel,
    BootMode,
    CommandResult,
    ExecOptions,
    MachineSpec,
    Network,
    OutputCallback,
)
from vmrunner.vm.qemu import QemuMachine
from vmrunner.vm.records import GcReport, collect

Progress = Callable[[str], None]
log = logging.getLogger(__name__)


def _noop(_msg: str) -> None:
    return None


def kvm_cache_file(settings: Settings) -> Path:
    return settings.state_dir / "kvm-check.json"


def snapshots_dir(settings: Settings) -> Path:
    return settings.cache_dir / "snapshots"


def gc(settings: Settings) -> GcReport:
    """Remove what dead vmrunner processes left behind (VMs, overlays, sockets, temp dirs)."""
    settings.ensure_dirs()
    return collect(
        [settings.vms_dir, settings.state_dir / "tmp"],
        [(settings.images_dir, "*/.tmp-*"), (snapshots_dir(settings), ".tmp-*"),
         (Path(tempfile.gettempdir()), f"{MMDEBSTRAP_TMP_PREFIX}*")],
    )  # fmt: skip


def build_image(
    settings: Settings, name: str, *, force: bool = False, progress: Progress = _noop
) -> Image:
    """Build (or find cached) image ``name``."""
    settings.ensure_dirs()
    return ImageCache(settings.images_dir).ensure(name, progress, force=force)


def list_images(settings: Settings) -> list[Image]:
    return ImageCache(settings.images_dir).list()


@dataclass(frozen=True)
class CopySpec:
    src: str
    dst: str

    @classmethod
    def parse(cls, text: str, flag: str) -> CopySpec:
        src, sep, dst = text.partition(":")
        if not sep or not src or not dst:
            raise ConfigError(f"{flag} expects SRC:DST, got {text!r}")
        return cls(src, dst)


@dataclass(frozen=True)
class ExecRequest:
    """One ``vmrunner exec``: a command to run in a fresh VM."""

    argv: tuple[str, ...]
    image: str = "debian"
    accel: str = "auto"
    cpus: int = 2
    memory_mib: int = 1024
    timeout: float | None = None
    network: str = "none"
    env: tuple[tuple[str, str], ...] = ()
    workdir: str = "/root"
    copy_in: tuple[CopySpec, ...] = ()
    copy_out: tuple[CopySpec, ...] = ()
    boot_mode: str = "fast"
    snapshot: bool = True


@dataclass
class ExecOutcome:
    """What ``exec_command`` returns: the command's result and how the VM ran."""

    result: CommandResult
    accel: str
    kvm: KvmStatus | None
    image: str
    timings: dict[str, float] = field(default_factory=dict)
    restored: bool = False
    run_id: str = ""
    learning: dict[str, object] | None = None

    @property
    def status(self) -> int:
        return self.result.status

    def to_dict(self) -> dict[str, object]:
        r = self.result
        return {
            "id": self.run_id,
            "status": "success" if r.ok else ("timeout" if r.timed_out else "failure"),
            "exit_code": r.exit_code,
            "signal": r.signal,
            "timed_out": r.timed_out,
            "exit_status": r.status,
            "accel": self.accel,
            "image": self.image,
            "argv": list(r.argv),
            "duration_s": round(r.duration_s, 6),
            "timings": {k: round(v, 6) for k, v in self.timings.items()},
            "restored_from_snapshot": self.restored,
            "learning": self.learning,
            "error": r.error,
        }


async def _launch(spec: MachineSpec, settings: Settings, *, use_snapshot: bool) -> QemuMachine:
    """Launch a VM, from a snapshot when allowed; a snapshot that fails to restore is
    deleted and the VM boots cold instead (the next cold boot saves a new one)."""
    machine = QemuMachine(spec, settings.vms_dir, snapshots_dir(settings) if use_snapshot else None)
    try:
        await machine.launch()
    except VmStartError as exc:
        if machine.snapshot_used is None:
            raise
        log.warning("snapshot %s failed to restore (%s); booting cold", machine.snapshot_used, exc)
        shutil.rmtree(machine.snapshot_used, ignore_errors=True)
        machine = QemuMachine(spec, settings.vms_dir, snapshots_dir(settings))
        await machine.launch()
    return machine


async def _prepare(
    settings: Settings, image: str, accel: str, progress: Progress
) -> tuple[Image, Accel, KvmStatus | None]:
    """Before any VM: reap debris, resolve the accelerator (``kvm`` fails here at once
    when KVM is not functional), and build the image on first use."""
    gc(settings)
    chosen, kvm = await asyncio.to_thread(choose_accel, accel, kvm_cache_file(settings))
    img = await asyncio.to_thread(ImageCache(settings.images_dir).ensure, image, progress)
    return img, chosen, kvm


@contextlib.asynccontextmanager
async def machine(
    settings: Settings,
    *,
    image: str = "debian",
    accel: str = "auto",
    cpus: int = 2,
    memory_mib: int = 1024,
    network: str = "none",
    boot_mode: str = "fast",
    boot_timeout: float = 120.0,
    use_snapshot: bool = True,
    name: str = "vm",
    progress: Progress = _noop,
) -> AsyncIterator[QemuMachine]:
    """A running VM for the duration of the ``async with`` block, then torn down.

    Resolves the accelerator (``kvm`` raises ``KvmUnavailableError`` at once when
    KVM is not functional), builds the image on first use, boots (from a snapshot
    when possible) and always shuts the VM down, even on error or cancellation.
    ``machine.spec.accel`` says which accelerator was used.
    """
    img, chosen, _kvm = await _prepare(settings, image, accel, progress)
    spec = MachineSpec(
        image=img, accel=chosen, cpus=cpus, memory_mib=memory_mib, network=Network(network),
        boot_mode=BootMode(boot_mode), boot_timeout=boot_timeout, name=name,
    )  # fmt: skip
    vm = await _launch(spec, settings, use_snapshot=use_snapshot)
    try:
        yield vm
    finally:
        await vm.shutdown(graceful=False)


class _Tail:
    """The last ``limit`` bytes written to it (for failure signatures)."""

    def __init__(self, limit: int = 16384) -> None:
        self.limit = limit
        self.data = b""

    def __call__(self, chunk: bytes) -> None:
        self.data = (self.data + chunk)[-self.limit :]


def _tee(first: OutputCallback, second: _Tail) -> OutputCallback:
    def both(chunk: bytes) -> None:
        first(chunk)
        second(chunk)

    return both


def _validate(req: ExecRequest) -> tuple[Network, BootMode]:
    if not req.argv:
        raise ConfigError("exec needs a command: vmrunner exec [OPTIONS] -- CMD [ARGS...]")
    if req.accel not in ("auto", "kvm", "tcg"):
        raise ConfigError(f"--accel must be auto, kvm or tcg, got {req.accel!r}")
    try:
        network, boot = Network(req.network), BootMode(req.boot_mode)
    except ValueError as exc:
        raise ConfigError(f"{exc} (--network none|user, --boot fast|systemd)") from exc
    if req.cpus < 1 or req.memory_mib < 128:
        raise ConfigError("--cpus must be at least 1 and --memory at least 128 MiB")
    for c in req.copy_in:
        if not Path(c.src).exists():
            raise ConfigError(f"--copy-in: {c.src} does not exist on the host")
    return network, boot


async def exec_command(
    settings: Settings,
    req: ExecRequest,
    *,
    on_stdout: OutputCallback,
    on_stderr: OutputCallback,
    progress: Progress = _noop,
) -> ExecOutcome:
    """Boot a fresh VM, run ``req.argv`` in it streaming its output, and tear it all down.

    Raises a ``VmrunnerError`` only for harness failures (and ``KvmUnavailableError``
    at once when ``--accel kvm`` is asked for but KVM is not functional).
    """
    t0 = time.monotonic()
    network, boot = _validate(req)
    image, accel, kvm = await _prepare(settings, req.image, req.accel, progress)
    spec = MachineSpec(
        image=image, accel=accel, cpus=req.cpus, memory_mib=req.memory_mib,
        network=network, boot_mode=boot, name=f"exec-{image.name}",
    )  # fmt: skip
    timings: dict[str, float] = {"prepare_s": time.monotonic() - t0}
    progress(f"booting a {image.name} VM ({accel.value})")
    run_id = f"exec-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(3).hex()}"
    tail_out, tail_err = _Tail(), _Tail()
    on_stdout, on_stderr = _tee(on_stdout, tail_out), _tee(on_stderr, tail_err)
    machine = await _launch(spec, settings, use_snapshot=req.snapshot)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(machine.shutdown, graceful=False)
        timings.update(machine.timings)
        for c in req.copy_in:
            await machine.copy_in(Path(c.src), c.dst)
        await machine.execute(["mkdir", "-p", req.workdir])
        t_cmd = time.monotonic()
        result = await machine.execute(
            req.argv,
            ExecOptions(
                env=dict(req.env), cwd=req.workdir, timeout=req.timeout,
                on_stdout=on_stdout, on_stderr=on_stderr,
            ),
        )  # fmt: skip
        timings["command_s"] = time.monotonic() - t_cmd
        for c in req.copy_out:
            await machine.copy_out(c.src, Path(c.dst))
    timings["total_s"] = time.monotonic() - t0
    obs = Observation(
        command=shlex.join(req.argv), exit_code=result.status, duration_s=result.duration_s,
        finished_at=datetime.now(UTC), run_id=run_id, job="exec", step=1, step_name="exec",
        image=image.name, kind="exec", output=tail_out.data + tail_err.data, env=dict(req.env),
    )  # fmt: skip
    hints = await asyncio.to_thread(
        functools.partial(
            learn_service.record, settings, [obs], hints_for=None if result.ok else run_id
        )
    )
    return ExecOutcome(
        result=result, accel=accel.value, kvm=kvm, image=image.name, timings=timings,
        restored=machine.restored, run_id=run_id, learning=hints,
    )  # fmt: skip


@dataclass(frozen=True)
class DoctorReport:
    """What ``vmrunner doctor`` found."""

    qemu: dict[str, object]
    tools: dict[str, str | None]
    kvm: KvmStatus
    state_dir: str
    cache_dir: str
    free_disk_bytes: int
    images: list[dict[str, object]]
    ok: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "qemu": self.qemu,
            "tools": self.tools,
            "kvm": self.kvm.to_dict(),
            "state_dir": self.state_dir,
            "cache_dir": self.cache_dir,
            "free_disk_bytes": self.free_disk_bytes,
            "images": self.images,
        }


def doctor(settings: Settings, *, refresh_kvm: bool = False) -> DoctorReport:
    """Check the host: QEMU, tools, KVM (three levels), directories, disk, images."""
    from vmrunner.procs import run_probe

    settings.ensure_dirs()
    tools = {
        t: shutil.which(t) or shutil.which(t, path="/usr/sbin:/sbin")
        for t in (
            "qemu-system-x86_64",
            "qemu-img",
            "mmdebstrap",
            "mkfs.ext4",
            "busybox",
            "apt-get",
            "dpkg-deb",
            "ip",
            "nsenter",
            "nft",
        )
    }
    qemu: dict[str, object] = {"path": tools["qemu-system-x86_64"], "version": None}
    if tools["qemu-system-x86_64"]:
        status, out = run_probe([str(tools["qemu-system-x86_64"]), "--version"], timeout=10)
        qemu["version"] = out.splitlines()[0] if status == 0 and out else None
    kvm = kvm_status(kvm_cache_file(settings), refresh=refresh_kvm)
    free = shutil.disk_usage(settings.cache_dir).free
    images = [i.to_dict() for i in list_images(settings)]
    required = ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "mkfs.ext4", "busybox")
    ok = all(tools[t] for t in required) and free > 2 << 30
    return DoctorReport(
        qemu, tools, kvm, str(settings.state_dir), str(settings.cache_dir), free, images, ok
    )
