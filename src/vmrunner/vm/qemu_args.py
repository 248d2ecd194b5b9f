"""QEMU's command line for a machine spec, as pure data.

Every file and channel of the VM is an inherited descriptor (:mod:`.vmfds`): the kernel
and initrd as ``/proc/self/fd/N``, disks and the console log through fd sets, QMP and the
agent as connected sockets. Paths appear only as labels of their descriptors.
"""

from __future__ import annotations

from pathlib import Path

from vmrunner.vm.machine import Accel, BootMode, MachineSpec, Network
from vmrunner.vm.vmfds import (
    CONSOLE_SET,
    OVERLAY_SET,
    ROOTFS_SET,
    ChannelFds,
    DiskFds,
    fd_path,
    fdset_args,
)

AGENT_PORT_NAME = "org.vmrunner.agent"
TCG_CPU = "Nehalem"  # x86-64-v2; see qemu_argv
# Kernel arguments that shorten a boot under emulation without changing behaviour.
FAST_KERNEL_ARGS = (
    "console=ttyS0",
    "panic=-1",
    "quiet",
    "loglevel=4",
    "root=/dev/vda",
    "rw",
    "mitigations=off",
    "i8042.noaux",
    "i8042.nokbd",
    "i8042.nopnp",
    "random.trust_cpu=on",
    "tsc=reliable",
    "no_timer_check",
    "8250.nr_uarts=1",
)


def qemu_argv(
    spec: MachineSpec,
    chans: ChannelFds,
    disks: DiskFds,
    qemu: str = "qemu-system-x86_64",
    vmdir: Path = Path("/vm"),
) -> list[str]:
    """The QEMU command line for ``spec``, its files and channels given as the inherited
    descriptors ``chans`` and ``disks`` (pure; see :mod:`.vmfds`). ``vmdir``, the VM's
    directory, only labels the descriptors of the files in it."""
    accel = "kvm" if spec.accel is Accel.KVM else "tcg"
    # Under TCG an x86-64-v2 model (SSE4.2, no AVX) runs the guest faster than "max":
    # glibc then picks string functions that TCG emulates cheaply.
    cpu = "host" if spec.accel is Accel.KVM else TCG_CPU
    args = [*FAST_KERNEL_ARGS, f"vmrunner.mode={spec.boot_mode.value}", *spec.kernel_args]
    if spec.boot_mode is BootMode.SYSTEMD:
        args = [a for a in args if a not in ("quiet", "loglevel=4")]
        args += ["systemd.show_status=1", "loglevel=3"]
    argv = [
        qemu,
        "-name", spec.name,
        "-machine", f"q35,accel={accel}",
        "-cpu", cpu,
        "-smp", str(spec.cpus),
        "-m", str(spec.memory_mib),
        "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none",
        "-no-reboot",
        "-kernel", fd_path(disks.kernel),
        "-initrd", fd_path(disks.initrd),
        "-append", " ".join(args),
        *disk_args(disks, spec.image.rootfs, vmdir / "overlay.qcow2"),
        "-device", "virtio-blk-pci,drive=root",
        *channel_args(chans, vmdir / "console.log", "console", "qmp", "agent"),
        "-serial", "chardev:console",
        "-mon", "chardev=qmp,mode=control",
        "-device", "virtio-serial-pci",
        "-device", f"virtserialport,chardev=agent,name={AGENT_PORT_NAME}",
        "-device", "virtio-rng-pci",
    ]  # fmt: skip
    if spec.network is Network.USER:
        argv += ["-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0"]
    return argv


def disk_args(disks: DiskFds, rootfs: Path, overlay: Path) -> list[str]:
    """The root disk: a qcow2 overlay (read-write, like ``cache=unsafe,discard=unmap``)
    on the image's raw disk (read-only), each opened from its fd set; the overlay's
    ``backing`` is that node, so QEMU never opens the path in the overlay's header.
    ``rootfs`` and ``overlay`` (their paths) only label the descriptors."""
    fast = "discard=unmap,cache.no-flush=on"
    return [
        *fdset_args(disks.rootfs, ROOTFS_SET, rootfs),
        *fdset_args(disks.overlay, OVERLAY_SET, overlay),
        "-blockdev", f"driver=file,node-name=base-file,filename=/dev/fdset/{ROOTFS_SET},read-only=on",
        "-blockdev", "driver=raw,node-name=base,file=base-file,read-only=on",
        "-blockdev", f"driver=file,node-name=root-file,filename=/dev/fdset/{OVERLAY_SET},{fast}",
        "-blockdev", f"driver=qcow2,node-name=root,file=root-file,backing=base,{fast}",
    ]  # fmt: skip


def channel_args(
    chans: ChannelFds, console_log: Path, console: str, qmp: str, agent: str
) -> list[str]:
    """Chardevs ``console`` (the log, appended to, from its fd set; ``console_log`` its
    path, a label), ``qmp`` and ``agent`` (connected sockets) over the inherited
    descriptors ``chans`` (pure)."""
    return [
        *fdset_args(chans.console, CONSOLE_SET, console_log),
        "-chardev", f"file,id={console},path=/dev/fdset/{CONSOLE_SET},append=on",
        "-chardev", f"socket,id={qmp},fd={chans.qmp}",
        "-chardev", f"socket,id={agent},fd={chans.agent}",
    ]  # fmt: skip
