"""Machines, images and the host: the VM-facing part of the service layer.

``machine()`` gives a running VM for an ``async with`` block (accelerator resolved,
image built on first use, snapshot used when possible, always torn down); ``gc``,
``doctor``, ``build_image`` and ``list_images`` serve the commands of the same names.
None prints. Harness failures raise from ``vmrunner.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from vmrunner.config import Settings
from vmrunner.errors import VmStartError
from vmrunner.images.builder import MMDEBSTRAP_TMP_PREFIX
from vmrunner.images.cache import Image, ImageCache
from vmrunner.images.recipe import builtin_recipes, mirrors_from
from vmrunner.toolkit.sockdir import sockets_parent
from vmrunner.vm.kvm import KvmStatus, choose_accel, kvm_status
from vmrunner.vm.machine import (
    Accel,
    BootMode,
    MachineSpec,
    Network,
)
from vmrunner.vm.qemu import QemuMachine
from vmrunner.vm.records import GcReport, collect
from vmrunner.vm.slots import VmSlots, auto_limit, default_dir

Progress = Callable[[str], None]
log = logging.getLogger(__name__)


def _noop(_msg: str) -> None:
    return None


def kvm_cache_file(settings: Settings) -> Path:
    return settings.state_dir / "kvm-check.json"


def snapshots_dir(settings: Settings) -> Path:
    return settings.cache_dir / "snapshots"


def image_cache(settings: Settings) -> ImageCache:
    """The image cache, with the built-in recipes on the configured Debian mirrors."""
    return ImageCache(settings.images_dir, builtin_recipes(mirrors_from(settings)))


def gc(settings: Settings) -> GcReport:
    """Remove what dead vmrunner processes left behind (VMs, overlays, sockets, temp dirs,
    the scratch directories of jobs whose run was killed: they hold unmasked files, the
    toolkit's socket directories, and half-saved tool-cache copies)."""
    settings.ensure_dirs()
    job_scratch = sorted((settings.state_dir / "runs").glob("*/work"))
    return collect(
        [settings.vms_dir, settings.state_dir / "tmp", *job_scratch, sockets_parent()],
        [(settings.images_dir, "*/.tmp-*"), (snapshots_dir(settings), ".tmp-*"),
         (Path(tempfile.gettempdir()), f"{MMDEBSTRAP_TMP_PREFIX}*"),
         (settings.cache_dir / "tool-cache", "*/.tmp-*")],
    )  # fmt: skip


def vm_slots(settings: Settings) -> VmSlots:
    """The host's running-VM slots (``max_vms``; 0: as many as fit in its memory)."""
    return VmSlots(settings.max_vms or auto_limit(settings.memory_mib), default_dir())


def build_image(
    settings: Settings, name: str, *, force: bool = False, progress: Progress = _noop
) -> Image:
    """Build (or find cached) image ``name``."""
    settings.ensure_dirs()
    return image_cache(settings).ensure(name, progress, force=force)


def list_images(settings: Settings) -> list[Image]:
    return image_cache(settings).list()


def with_settings(spec: MachineSpec, settings: Settings) -> MachineSpec:
    """``spec`` under the host's settings: its network allow-list, disk cap, copy-out quota
    and the user QEMU runs as (``qemu_user``)."""
    return dataclasses.replace(
        spec, network_allow=settings.network_allow, qemu_user=settings.qemu_user,
        disk_max_bytes=settings.vm_disk_max_mib << 20,
        copy_out_max_bytes=settings.copy_out_max_mib << 20,
    )  # fmt: skip


async def _launch(spec: MachineSpec, settings: Settings, *, use_snapshot: bool) -> QemuMachine:
    """Launch a VM, from a snapshot when allowed; a snapshot that fails to restore is
    deleted and the VM boots cold instead (the next cold boot saves a new one). The
    settings' ``network_allow`` and caps (``vm_disk_max_mib``, ``copy_out_max_mib``) apply to it."""
    spec = with_settings(spec, settings)
    machine = QemuMachine(spec, settings.vms_dir, snapshots_dir(settings) if use_snapshot else None)
    machine.slots = vm_slots(settings)
    try:
        await machine.launch()
    except VmStartError as exc:
        if machine.snapshot_used is None:
            raise
        log.warning("snapshot %s failed to restore (%s); booting cold", machine.snapshot_used, exc)
        shutil.rmtree(machine.snapshot_used, ignore_errors=True)
        machine = QemuMachine(spec, settings.vms_dir, snapshots_dir(settings))
        machine.slots = vm_slots(settings)
        await machine.launch()
    return machine


async def _prepare(
    settings: Settings, image: str, accel: str, progress: Progress
) -> tuple[Image, Accel, KvmStatus | None]:
    """Before any VM: reap debris, resolve the accelerator (``kvm`` fails here at once
    when KVM is not functional), and build the image on first use."""
    gc(settings)
    chosen, kvm = await asyncio.to_thread(choose_accel, accel, kvm_cache_file(settings))
    img = await asyncio.to_thread(image_cache(settings).ensure, image, progress)
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
            "newuidmap",
            "newgidmap",
        )
    }
    qemu: dict[str, object] = {"path": tools["qemu-system-x86_64"], "version": None}
    if tools["qemu-system-x86_64"]:
        status, out = run_probe([str(tools["qemu-system-x86_64"]), "--version"], timeout=10)
        qemu["version"] = out.splitlines()[0] if status == 0 and out else None
    kvm = kvm_status(kvm_cache_file(settings), refresh=refresh_kvm)
    free = shutil.disk_usage(settings.cache_dir).free
    images = [i.to_dict() for i in list_images(settings)]
    required = ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "mkfs.ext4", "busybox",
                "newuidmap", "newgidmap")  # fmt: skip
    ok = all(tools[t] for t in required) and free > 2 << 30
    return DoctorReport(
        qemu, tools, kvm, str(settings.state_dir), str(settings.cache_dir), free, images, ok
    )
