"""A VM's share of the host's disk and of what it copies out are capped by the settings.

``vm_disk_max_mib``: QEMU (and what it starts) runs with ``RLIMIT_FSIZE`` at the cap and
``SIGXFSZ`` ignored, so the overlay a guest fills stops at the cap while QEMU goes on, and
a VM starts only when the host has the cap free. ``copy_out_max_mib``: every copy_out of a
machine made under the settings stops at the quota with ``ArchiveLimitError``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import pytest

from vmrunner.config import Settings, load_settings
from vmrunner.errors import ArchiveLimitError, ConfigError, VmStartError
from vmrunner.images.cache import Image
from vmrunner.procs import spawn_vmm
from vmrunner.services import machines
from vmrunner.vm import sandbox
from vmrunner.vm.machine import MachineSpec

MIB = 1 << 20


@pytest.mark.parametrize(
    ("disk", "memory_mib", "saves", "cap"),
    [
        (8192 * MIB, 1024, False, 8192 * MIB),
        (8192 * MIB, 1024, True, 8192 * MIB),  # the disk cap is above RAM + state already
        (256 * MIB, 1024, False, 256 * MIB),
        (256 * MIB, 1024, True, 1024 * MIB + sandbox.SNAPSHOT_STATE_SLACK),  # room for the RAM
    ],
)
def test_file_size_cap(disk: int, memory_mib: int, saves: bool, cap: int) -> None:
    assert sandbox.file_size_cap(disk, memory_mib, saves_snapshot=saves) == cap


def _write_past(tmp_path: Path, preexec: object) -> tuple[int | None, int]:
    """dd 10000 bytes through spawn_vmm (with ``preexec``); its status and the file's size."""
    out = tmp_path / "out"

    async def main() -> int | None:
        argv = ["dd", "if=/dev/zero", f"of={out}", "bs=1000", "count=10"]
        proc = await spawn_vmm(argv, log=tmp_path / "log", preexec=preexec)  # type: ignore[arg-type]
        return await proc.wait()

    status = asyncio.run(main())
    return status, out.stat().st_size


def test_a_vmm_cannot_write_a_file_past_its_cap_and_is_not_killed(tmp_path: Path) -> None:
    status, size = _write_past(tmp_path, sandbox.limit_file_size(4096))
    assert size == 4096
    assert status == 1  # dd's write failed (EFBIG); no SIGXFSZ killed it
    assert "File too large" in (tmp_path / "log").read_text()


def test_without_the_cap_the_same_write_completes(tmp_path: Path) -> None:
    status, size = _write_past(tmp_path, None)
    assert (status, size) == (0, 10000)


def test_a_vm_needs_its_cap_free_on_the_host(tmp_path: Path) -> None:
    sandbox.require_free(tmp_path, 1)
    too_much = sandbox.free_bytes(tmp_path) + (1 << 40)
    with pytest.raises(VmStartError, match=r"not enough free disk .*\(vm_disk_max_mib\)") as err:
        sandbox.require_free(tmp_path, too_much)
    assert str(tmp_path) in str(err.value)


def test_the_caps_are_settings_with_defaults(tmp_path: Path) -> None:
    env = {"VMRUNNER_HOME": str(tmp_path), "VMRUNNER_CONFIG": str(tmp_path / "c.toml")}
    default = load_settings(env=env)
    assert (default.vm_disk_max_mib, default.copy_out_max_mib) == (8192, 8192)
    (tmp_path / "c.toml").write_text("vm_disk_max_mib = 2048\ncopy_out_max_mib = '64'\n")
    settings = load_settings(env=env)
    assert (settings.vm_disk_max_mib, settings.copy_out_max_mib) == (2048, 64)
    for bad in ("vm_disk_max_mib = 0\n", "copy_out_max_mib = -1\n", "copy_out_max_mib = 'x'\n"):
        (tmp_path / "c.toml").write_text(bad)
        with pytest.raises(ConfigError, match=bad.split()[0]):
            load_settings(env=env)
    spec = MachineSpec(image=Image("debian", "d" * 64, Path("/img"), "6.1", 0.0, 1.0))
    capped = machines.with_settings(spec, settings)
    assert (capped.disk_max_bytes, capped.copy_out_max_bytes) == (2048 * MIB, 64 * MIB)
    assert dataclasses.replace(capped, disk_max_bytes=0, copy_out_max_bytes=0) == (
        dataclasses.replace(spec, disk_max_bytes=0, copy_out_max_bytes=0)
    )  # nothing else changed


@pytest.mark.vm
@pytest.mark.usefixtures("debian_image")
def test_a_guest_filling_its_disk_stops_at_the_cap_and_copy_out_at_the_quota(
    state_dir: Path, tmp_path: Path
) -> None:
    settings: Settings = load_settings(
        {"vm_disk_max_mib": 48, "copy_out_max_mib": 1},
        env={**os.environ, "VMRUNNER_HOME": str(state_dir)},
    )

    async def main() -> None:
        async with machines.machine(settings, accel="tcg", use_snapshot=False) as vm:
            overlay = vm.vmdir / "overlay.qcow2"
            await vm.succeed("head -c 2097152 /dev/urandom > /root/two-mib")
            with pytest.raises(ArchiveLimitError, match="1048576"):
                await vm.copy_out("/root/two-mib", tmp_path / "out")
            await vm.copy_out("/etc/hostname", tmp_path / "small")  # under the quota: fine
            assert (tmp_path / "small").read_text() == "vmrunner\n"
            fill = await vm.run("dd if=/dev/zero of=/root/fill bs=1M count=96 oflag=direct", 300)
            assert not fill.ok  # the guest saw its disk fail
            assert overlay.stat().st_size <= 48 * MIB
            assert (await vm.run("echo alive")).stdout == b"alive\n"  # QEMU went on

    asyncio.run(main())
