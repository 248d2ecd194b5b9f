"""The NixOS run-script contract as data: what vmrunner puts in the script's environment,
and how it finds the script. (Booting through it: tests/systest/test_nixos_vm.py.)"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from vmrunner.errors import VmStartError
from vmrunner.vm.machine import Accel
from vmrunner.vm.nixos import find_run_script, qemu_opts, run_script_env
from vmrunner.vm.qemu import AGENT_PORT_NAME


@pytest.mark.parametrize("accel", [Accel.TCG, Accel.KVM])
def test_env_points_every_file_into_the_vm_directory(tmp_path: Path, accel: Accel) -> None:
    vmdir, sockdir = tmp_path / "vm-1", Path("/tmp/vmrunner-0/s1")
    env = run_script_env(vmdir, sockdir, accel, {"PATH": "/usr/bin", "HOME": "/root"})
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/root"
    assert env["NIX_DISK_IMAGE"] == str(vmdir / "disk.qcow2")
    assert env["TMPDIR"] == str(vmdir / "tmp") and env["USE_TMPDIR"] == "1"
    assert env["QEMU_KERNEL_PARAMS"].split() == [
        "console=ttyS0",
        "panic=-1",
        "systemd.show_status=1",
    ]
    opts = env["QEMU_OPTS"].split()  # the script splits it on white space, unquoted
    assert opts == qemu_opts(vmdir, sockdir, accel)
    assert opts[:2] == ["-machine", f"accel={accel.value}"]
    assert "-no-reboot" in opts
    assert f"file,id=vmr-console,path={vmdir}/console.log" in opts
    assert f"socket,id=vmr-qmp,path={sockdir}/qmp.sock" in opts
    assert f"socket,id=vmr-agent,path={sockdir}/agent.sock" in opts
    port = opts[
        opts.index("virtserialport,bus=vmr-serial.0,chardev=vmr-agent,name=" + AGENT_PORT_NAME) - 1
    ]
    assert port == "-device"


def test_env_refuses_paths_with_white_space(tmp_path: Path) -> None:
    with pytest.raises(VmStartError, match="white space"):
        run_script_env(tmp_path / "my vm", tmp_path, Accel.TCG, {})


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
    env = run_script_env(tmp_path, tmp_path, Accel.TCG, {})
    assert shlex.split(env["QEMU_OPTS"]) == env["QEMU_OPTS"].split()
