"""The NixOS run-script contract as data: what vmrunner puts in the script's environment,
and how it finds the script. (Booting through it: tests/systest/test_nixos_vm.py.)"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from vmrunner.errors import VmStartError
from vmrunner.vm.machine import Accel
from vmrunner.vm.nixos import find_run_script, qemu_opts, run_script_env
from vmrunner.vm.qemu_args import AGENT_PORT_NAME
from vmrunner.vm.vmfds import CONSOLE_SET, ChannelFds


@pytest.mark.parametrize("accel", [Accel.TCG, Accel.KVM])
def test_env_points_every_file_into_the_vm_directory(tmp_path: Path, accel: Accel) -> None:
    vmdir, chans = tmp_path / "vm-1", ChannelFds(console=7, qmp=8, agent=9)
    env = run_script_env(vmdir, chans, accel, {"PATH": "/usr/bin", "HOME": "/root"})
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/root"
    assert env["NIX_DISK_IMAGE"] == str(vmdir / "disk.qcow2")
    assert env["TMPDIR"] == str(vmdir / "tmp") and env["USE_TMPDIR"] == "1"
    assert env["QEMU_KERNEL_PARAMS"].split() == [
        "console=ttyS0",
        "panic=-1",
        "systemd.show_status=1",
    ]
    opts = env["QEMU_OPTS"].split()  # the script splits it on white space, unquoted
    assert opts == qemu_opts(vmdir, chans, accel)
    assert opts[:2] == ["-machine", f"accel={accel.value}"]
    assert "-no-reboot" in opts
    # the channels are vmrunner's descriptors: the console log through an fd set
    assert f"fd=7,set={CONSOLE_SET},opaque={vmdir}/console.log" in opts
    assert f"file,id=vmr-console,path=/dev/fdset/{CONSOLE_SET},append=on" in opts
    assert "socket,id=vmr-qmp,fd=8" in opts and "socket,id=vmr-agent,fd=9" in opts
    port = opts[
        opts.index("virtserialport,bus=vmr-serial.0,chardev=vmr-agent,name=" + AGENT_PORT_NAME) - 1
    ]
    assert port == "-device"


def test_env_refuses_paths_with_white_space(tmp_path: Path) -> None:
    with pytest.raises(VmStartError, match="white space"):
        run_script_env(tmp_path / "my vm", ChannelFds(3, 4, 5), Accel.TCG, {})


def _out(tmp_path: Path, *names: str, mode: int = 0o755) -> Path:
    (tmp_path / "bin").mkdir(parents=True)
    for name in names:
        (tmp_path / "bin" / name).write_text("#!/bin/sh\n")
        (tmp_path / "bin" / name).chmod(mode)
    return tmp_path


@pytest.mark.parametrize(
    ("names", "mode", "error"),
    [
        (("run-web-vm",), 0o755, None),
        ((), 0o755, "found none"),
        (("run-a-vm", "run-b-vm"), 0o755, "found run-a-vm, run-b-vm"),
        (("run-web-vm",), 0o644, "not executable"),
        (("nixos-rebuild",), 0o755, "found none"),
    ],
)
def test_find_run_script(
    tmp_path: Path, names: tuple[str, ...], mode: int, error: str | None
) -> None:
    out = _out(tmp_path, *names, mode=mode)
    if error is None:
        assert find_run_script(out) == out / "bin" / names[0]
    else:
        with pytest.raises(VmStartError, match=error):
            find_run_script(out)


def test_opts_survive_the_scripts_word_splitting(tmp_path: Path) -> None:
    env = run_script_env(tmp_path, ChannelFds(3, 4, 5), Accel.TCG, {})
    assert shlex.split(env["QEMU_OPTS"]) == env["QEMU_OPTS"].split()
