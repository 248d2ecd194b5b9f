"""Ending a VMM's process group (``end_process_group``, used by ``QemuMachine``'s hard
shutdown): SIGTERM, then SIGKILL after the grace, the wait bounded, and the event loop free
to run other tasks meanwhile. Real process groups: ``sh`` with ``sleep`` children, started
in a session of their own by the project's ``spawn_vmm``."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from vmrunner.procs import group_members, spawn_vmm
from vmrunner.vm.qemu import end_process_group

# Each script waits for its backgrounded sleeps; "trap '' TERM" makes the whole group
# ignore SIGTERM (an ignored signal stays ignored across fork and exec).
OBEYS_TERM = "sleep 300 & sleep 300 & wait"
IGNORES_TERM = "trap '' TERM; sleep 300 & sleep 300 & wait"


async def _group(script: str, log: Path) -> asyncio.subprocess.Process:
    """A new session running ``script``, returned once its two sleeps are running."""
    proc = await spawn_vmm(["sh", "-c", script], log=log)
    for _ in range(500):
        if len(group_members(proc.pid)) == 3:
            return proc
        await asyncio.sleep(0.01)
    proc.kill()
    await proc.wait()
    pytest.fail(f"the group never had its 3 processes: {group_members(proc.pid)}")


async def _end_while_ticking(pgid: int, grace: float) -> tuple[bool, int]:
    """Run ``end_process_group`` beside a task that counts how often it got to run."""
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)  # the ticker's first turn happens before the kill starts
    before = ticks
    try:
        ended = await end_process_group(pgid, grace=grace, hard_wait=10.0)
    finally:
        stop.set()
        await task
    return ended, ticks - before


@pytest.mark.parametrize(
    ("script", "signal_seen"), [(OBEYS_TERM, signal.SIGTERM), (IGNORES_TERM, signal.SIGKILL)]
)
def test_the_group_ends_soft_then_hard(
    tmp_path: Path, script: str, signal_seen: signal.Signals
) -> None:
    async def body() -> None:
        proc = await _group(script, tmp_path / "log")
        try:
            ended, _ = await _end_while_ticking(proc.pid, grace=0.5)
            assert ended
            assert group_members(proc.pid) == []
        finally:
            await proc.wait()
        assert proc.returncode == -signal_seen

    asyncio.run(body())


def test_the_event_loop_keeps_running_while_it_waits_for_the_grace(tmp_path: Path) -> None:
    """A group that ignores SIGTERM is waited for during the whole grace: a blocking wait
    would give the ticker no turn at all until it ended (zero ticks); polling with
    ``asyncio.sleep`` gives it one turn per poll at least."""

    async def body() -> int:
        proc = await _group(IGNORES_TERM, tmp_path / "log")
        try:
            ended, ticks = await _end_while_ticking(proc.pid, grace=1.0)
            assert ended
        finally:
            await proc.wait()
        return ticks

    assert asyncio.run(body()) >= 5


def test_ending_a_group_is_idempotent(tmp_path: Path) -> None:
    async def body() -> list[bool]:
        proc = await _group(OBEYS_TERM, tmp_path / "log")
        try:
            first = await end_process_group(proc.pid, grace=2.0)
        finally:
            await proc.wait()
        again = await end_process_group(proc.pid, grace=2.0)  # gone and reaped
        return [first, again]

    assert asyncio.run(body()) == [True, True]


def test_a_group_that_never_existed_is_already_ended() -> None:
    beyond = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process can have it
    assert asyncio.run(end_process_group(beyond, grace=0.1)) is True
