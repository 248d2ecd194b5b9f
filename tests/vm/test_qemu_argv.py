"""The QEMU command line, as pure data."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmrunner.images.cache import Image
from vmrunner.vm.machine import Accel, BootMode, MachineSpec, Network
from vmrunner.vm.qemu import qemu_argv

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
    argv = qemu_argv(spec, Path("/state/vms/vm-1"), "qemu", Path("/tmp/s"))
    assert argv[0] == "qemu"
    assert _opt(argv, "-machine") == [machine] and _opt(argv, "-cpu") == [cpu]
    assert _opt(argv, "-kernel") == ["/cache/img/vmlinuz"] and _opt(argv, "-initrd") == [
        "/cache/img/initrd.cpio"
    ]
    assert ("-netdev" in argv) is has_net
    append = _opt(argv, "-append")[0].split()
    assert all(a in append for a in append_has) and not any(a in append for a in append_lacks)
    chardevs = _opt(argv, "-chardev")
    assert "socket,id=qmp,path=/tmp/s/qmp.sock" in chardevs
    assert "socket,id=agent,path=/tmp/s/agent.sock" in chardevs
    assert "file,id=console,path=/state/vms/vm-1/console.log,append=on" in chardevs
    assert any(d.startswith("file=/state/vms/vm-1/overlay.qcow2,") for d in _opt(argv, "-drive"))
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
