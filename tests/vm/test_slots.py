"""The host's running-VM limit: slots are flock'ed files shared by every process; a killed
holder frees its slot; a VM beyond the limit waits for one; a Machine holds its slot from
launch until it is stopped, and gives it back when its launch fails."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from vmrunner.config import load_settings
from vmrunner.errors import ConfigError, VmStartError
from vmrunner.images.cache import Image
from vmrunner.vm.machine import CommandResult, ExecOptions, Machine, MachineSpec
from vmrunner.vm.slots import VmSlots, auto_limit

HOLDER = """
import sys
from pathlib import Path
from vmrunner.vm.slots import VmSlots
fh = VmSlots(int(sys.argv[2]), Path(sys.argv[1])).try_acquire()
print("held" if fh else "none", flush=True)
sys.stdin.read()
"""


def _holder(directory: Path, limit: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory), str(limit)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == b"held\n"
    return proc


def test_slots_are_shared_between_processes_and_freed_when_a_holder_dies(tmp_path: Path) -> None:
    slots = VmSlots(2, tmp_path / "slots")
    first, second = _holder(slots.directory, 2), _holder(slots.directory, 2)
    try:
        assert slots.try_acquire() is None  # the host is full
        first.send_signal(signal.SIGKILL)
        first.wait()
        fh = slots.try_acquire()  # the kernel dropped the killed holder's lock
        assert fh is not None
        fh.close()
    finally:
        for proc in (first, second):
            proc.kill()
            proc.wait()


def test_a_vm_beyond_the_limit_waits_for_a_slot(tmp_path: Path) -> None:
    slots = VmSlots(1, tmp_path / "slots")
    holder = _holder(slots.directory, 1)
    waited: list[bool] = []

    async def scenario() -> None:
        task = asyncio.ensure_future(slots.acquire(on_wait=lambda: waited.append(True)))
        await asyncio.sleep(0)
        assert not task.done() and waited == [True]
        holder.kill()  # the running VM goes
        await asyncio.to_thread(holder.wait)
        fh = await asyncio.wait_for(task, 60)
        fh.close()

    try:
        asyncio.run(scenario())
    finally:
        holder.kill()
        holder.wait()


class _Fake(Machine):
    """A machine whose backend does nothing (or fails to launch): the slot logic is Machine's."""

    fail = False

    async def _launch(self) -> None:
        if self.fail:
            raise VmStartError("no")

    async def _execute(self, argv: Sequence[str], opts: ExecOptions) -> CommandResult:
        raise NotImplementedError

    async def _copy_in(self, host_src: Path, guest_dst: str, timeout: float) -> None: ...

    async def _copy_out(
        self, guest_src: str, host_dst: Path, timeout: float, max_bytes: int
    ) -> None: ...

    async def _soft_shutdown(self, timeout: float) -> bool:
        return True

    async def _hard_shutdown(self) -> None: ...


SPEC = MachineSpec(image=Image("debian", "d" * 64, Path("/cache/img"), "6.1.0", 0.0, 1.0))


@pytest.mark.parametrize("fail", [False, True])
def test_a_machine_holds_its_slot_from_launch_until_stopped(tmp_path: Path, fail: bool) -> None:
    slots = VmSlots(1, tmp_path / "slots")
    machine = _Fake(SPEC)
    machine.slots, machine.fail = slots, fail

    async def scenario() -> None:
        if fail:
            with pytest.raises(VmStartError):
                await machine.launch()
        else:
            await machine.launch()
            assert slots.try_acquire() is None
            await machine.shutdown()
        fh = slots.try_acquire()
        assert fh is not None
        fh.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("total_kib", "memory_mib", "limit"),
    [(24683520, 1024, 17), (2097152, 1024, 1), (1048576, 4096, 1), (67108864, 2048, 24)],
)
def test_auto_limit_fits_75_percent_of_memory(
    tmp_path: Path, total_kib: int, memory_mib: int, limit: int
) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal:       {total_kib} kB\nMemFree:  1 kB\n")
    assert auto_limit(memory_mib, meminfo) == limit


def test_caps_are_settings_that_cannot_be_negative(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("max_vms = 3\nmax_parallel = 2\n")
    settings = load_settings(env={"VMRUNNER_CONFIG": str(cfg), "VMRUNNER_HOME": str(tmp_path)})
    assert (settings.max_vms, settings.max_parallel) == (3, 2)
    cfg.write_text("max_vms = -1\n")
    with pytest.raises(ConfigError, match="max_vms must not be negative"):
        load_settings(env={"VMRUNNER_CONFIG": str(cfg), "VMRUNNER_HOME": str(tmp_path)})
