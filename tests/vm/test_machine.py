"""The machine model on a real guest: state guard, the calls written above the backend,
snapshots, boot modes, and the errors a missing or corrupt image gives."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from vmrunner.config import Settings
from vmrunner.errors import ImageError, VmError, VmStateError
from vmrunner.images.cache import ImageCache
from vmrunner.vm.machine import Accel, BootMode, MachineSpec, State
from vmrunner.vm.qemu import QemuMachine

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("debian_image")]


def _image(settings: Settings):  # type: ignore[no-untyped-def]
    image = ImageCache(settings.images_dir).find("debian")
    assert image is not None
    return image


def test_state_machine_and_user_calls(settings: Settings) -> None:
    async def main() -> None:
        m = QemuMachine(MachineSpec(image=_image(settings), accel=Accel.TCG), settings.vms_dir)
        assert m.state is State.IDLE
        with pytest.raises(VmStateError, match="idle"):
            await m.run("true")
        async with m:
            assert m.state is State.RUNNING
            assert (await m.succeed("echo hi; echo there >&2")) == "hi\n"
            res = await m.run("exit 3")
            assert (res.status, res.ok) == (3, False)
            with pytest.raises(VmError, match="status 3"):
                await m.succeed("exit 3")
            await m.run("(sleep 1; touch /tmp/flag) &")  # keeps running after run() returns
            assert await m.wait_until_succeeds("test -e /tmp/flag && echo ok", timeout=30) == "ok\n"
            with pytest.raises(VmError, match="did not succeed"):
                await m.wait_until_succeeds("false", timeout=2, interval=0.5)
            with pytest.raises(VmStateError):
                await m.launch()
        assert m.state is State.STOPPED
        assert not m.vmdir.exists()
        await m.shutdown()  # idempotent

    asyncio.run(main())


def test_snapshot_restore_gives_fresh_identical_machines(
    settings: Settings, tmp_path: Path
) -> None:
    snaps = tmp_path / "snaps"

    async def boot_once() -> tuple[bool, str, str]:
        m = QemuMachine(
            MachineSpec(image=_image(settings), accel=Accel.TCG), settings.vms_dir, snaps
        )
        async with m:
            marker = await m.run(
                "test -e /root/marker && echo dirty || echo clean; touch /root/marker"
            )
            rnd = await m.succeed("cat /proc/sys/kernel/random/uuid")
            clock = await m.succeed("date +%s")
            return m.restored, marker.stdout.decode().strip() + " " + rnd.strip(), clock.strip()

    async def main() -> None:
        import time

        first = await boot_once()  # cold boot, saves the snapshot
        assert first[0] is False
        assert any(snaps.iterdir())
        second = await boot_once()
        third = await boot_once()
        assert second[0] is True and third[0] is True
        # each restored VM is pristine (no marker from an earlier VM) and has its own randomness
        assert second[1].startswith("clean") and third[1].startswith("clean")
        assert second[1] != third[1]
        assert abs(int(third[2]) - time.time()) < 30, "the guest clock is reset after a restore"

    asyncio.run(main())


def test_systemd_boot_mode(settings: Settings) -> None:
    async def main() -> None:
        spec = MachineSpec(
            image=_image(settings), accel=Accel.TCG, boot_mode=BootMode.SYSTEMD, boot_timeout=240
        )
        async with QemuMachine(spec, settings.vms_dir) as m:
            out = await m.succeed(
                "systemctl is-system-running --wait; ps -p 1 -o comm=", timeout=240
            )
            assert out.split() == ["running", "systemd"]
            assert "Reached target" in m.console_log.read_text(errors="replace")

    asyncio.run(main())


def _entry_copy(settings: Settings, tmp_path: Path) -> ImageCache:
    """A private cache holding a copy of the built image's entry (disk linked, not copied)."""
    image = _image(settings)
    cache = ImageCache(tmp_path / "images")
    entry = cache.entry("debian")
    entry.mkdir(parents=True)
    for name in ("vmlinuz", "initrd.cpio", "manifest.json"):
        shutil.copy(image.path / name, entry / name)
    (entry / "rootfs.raw").symlink_to(image.rootfs)
    return cache


def test_missing_kernel_is_a_clear_error(settings: Settings, tmp_path: Path) -> None:
    cache = _entry_copy(settings, tmp_path)
    (cache.entry("debian") / "vmlinuz").unlink()
    with pytest.raises(ImageError, match=r"missing .*vmlinuz"):
        cache.find("debian")


def test_corrupt_kernel_is_a_clear_error(settings: Settings, tmp_path: Path) -> None:
    cache = _entry_copy(settings, tmp_path)
    kernel = cache.entry("debian") / "vmlinuz"
    data = bytearray(kernel.read_bytes())
    data[4096] ^= 0xFF
    kernel.write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"vmlinuz is corrupt"):
        cache.find("debian")


def test_corrupt_disk_is_a_clear_error(settings: Settings, tmp_path: Path) -> None:
    cache = _entry_copy(settings, tmp_path)
    disk = cache.entry("debian") / "rootfs.raw"
    disk.unlink()
    disk.write_bytes(b"\0" * 8192)
    with pytest.raises(ImageError, match=r"not an ext4 disk"):
        cache.find("debian")


def test_unbootable_kernel_gives_argv_status_and_console(
    settings: Settings, tmp_path: Path
) -> None:
    """A kernel file that passes the cache check but cannot boot: the start error names
    QEMU's argv, its exit status and the log tails, and nothing is left behind."""
    image = _image(settings)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "vmlinuz").write_bytes(b"not a kernel" * 100)
    shutil.copy(image.initrd, bad / "initrd.cpio")
    (bad / "rootfs.raw").symlink_to(image.rootfs)
    from dataclasses import replace

    from vmrunner.errors import VmStartError

    spec = MachineSpec(image=replace(image, path=bad), accel=Accel.TCG, boot_timeout=30)

    async def main() -> None:
        m = QemuMachine(spec, settings.vms_dir)
        with pytest.raises(VmStartError) as info:
            await m.launch()
        err = info.value
        assert err.argv and err.argv[0].endswith("qemu-system-x86_64")
        assert err.status is not None and err.status != 0
        assert "qemu" in str(err).lower()
        assert m.state is State.STOPPED
        assert not any(settings.vms_dir.iterdir())

    asyncio.run(main())
