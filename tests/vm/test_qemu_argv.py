"""The QEMU command line, as pure data (every file and channel a descriptor)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmrunner.images.cache import Image
from vmrunner.vm.machine import Accel, BootMode, MachineSpec, Network
from vmrunner.vm.qemu_args import qemu_argv
from vmrunner.vm.vmfds import ChannelFds, DiskFds

IMAGE = Image("debian", "d" * 64, Path("/cache/img"), "6.1.0", 0.0, 1.0)


def _opt(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


@pytest.mark.parametrize(
    ("spec", "machine", "cpu", "has_net", "append_has", "append_lacks"),
    [
        (MachineSpec(image=IMAGE), "q35,accel=tcg", "Nehalem", False, ["vmrunner.mode=fast", "quiet"], []),
        (MachineSpec(image=IMAGE, accel=Accel.KVM), "q35,accel=kvm", "host", False, [], []),
        (MachineSpec(image=IMAGE, network=Network.USER), "q35,accel=tcg", "Nehalem", True, [], []),
        (
            MachineSpec(image=IMAGE, boot_mode=BootMode.SYSTEMD, kernel_args=("foo=1",)),
            "q35,accel=tcg", "Nehalem", False, ["vmrunner.mode=systemd", "systemd.show_status=1", "foo=1"], ["quiet"],
        ),
    ],
)  # fmt: skip
def test_argv(
    spec: MachineSpec,
    machine: str,
    cpu: str,
    has_net: bool,
    append_has: list[str],
    append_lacks: list[str],
) -> None:
    chans, disks = ChannelFds(console=3, qmp=4, agent=5), DiskFds(6, 7, 8, 9)
    argv = qemu_argv(spec, chans, disks, "qemu", Path("/state/vms/vm-1"))
    assert argv[0] == "qemu"
    assert _opt(argv, "-machine") == [machine] and _opt(argv, "-cpu") == [cpu]
    # QEMU opens no path of the VM: every file and channel is an inherited descriptor
    assert _opt(argv, "-kernel") == ["/proc/self/fd/6"]
    assert _opt(argv, "-initrd") == ["/proc/self/fd/7"]
    # (a path appears only as a label of its descriptor)
    paths = [a for a in argv if "/state" in a or "/cache" in a]
    assert all(",opaque=" in a for a in paths) and not any(".sock" in a for a in argv)
    assert ("-netdev" in argv) is has_net
    append = _opt(argv, "-append")[0].split()
    assert all(a in append for a in append_has) and not any(a in append for a in append_lacks)
    chardevs = _opt(argv, "-chardev")
    assert "socket,id=qmp,fd=4" in chardevs and "socket,id=agent,fd=5" in chardevs
    assert _opt(argv, "-add-fd") == [
        "fd=8,set=1,opaque=/cache/img/rootfs.raw",
        "fd=9,set=2,opaque=/state/vms/vm-1/overlay.qcow2",
        "fd=3,set=3,opaque=/state/vms/vm-1/console.log",
    ]
    assert "file,id=console,path=/dev/fdset/3,append=on" in chardevs
    nodes = {
        dict(kv.split("=", 1) for kv in b.split(","))["node-name"]: b
        for b in _opt(argv, "-blockdev")
    }
    assert "filename=/dev/fdset/1,read-only=on" in nodes["base-file"]
    assert "read-only=on" in nodes["base"] and "read-only" not in nodes["root-file"]
    # the overlay's backing is the read-only raw node: never the path in its header
    assert "driver=qcow2" in nodes["root"] and "backing=base" in nodes["root"]
    assert "filename=/dev/fdset/2" in nodes["root-file"]
    assert "-no-reboot" in argv and "-nodefaults" in argv


def test_the_console_log_is_cut_back_when_the_guest_floods_it(tmp_path: Path) -> None:
    from vmrunner.vm.qemu import cap_file

    log = tmp_path / "console.log"
    log.write_bytes(b"boot\n" + b"z" * 5000 + b"\nlast line\n")
    assert not cap_file(log, cap=10_000, keep=100)
    assert cap_file(log, cap=1000, keep=100)
    data = log.read_bytes()
    assert data.startswith(b"[vmrunner: the console log passed 1000 bytes and was cut]\n")
    assert data.endswith(b"\nlast line\n") and len(data) < 200
    assert not cap_file(tmp_path / "missing.log")
