"""The machine model: an immutable spec, a state machine, and the user-facing calls.

A backend implements four things: ``_launch``, ``_execute``, ``_soft_shutdown``
and ``_hard_shutdown``. Everything users call (``run``, ``succeed``,
``wait_until_succeeds``, ``copy_in``, ``copy_out``, ``shutdown``) is written
once here, above them.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from vmrunner.errors import VmError, VmStateError
from vmrunner.images.cache import Image
from vmrunner.vm.slots import VmSlots


class Accel(enum.StrEnum):
    KVM = "kvm"
    TCG = "tcg"


class BootMode(enum.StrEnum):
    FAST = "fast"  # kernel + minimal init + agent, no systemd (CI jobs)
    SYSTEMD = "systemd"  # full systemd boot (system tests)


class Network(enum.StrEnum):
    NONE = "none"
    USER = "user"


class State(enum.Enum):
    IDLE = "idle"
    LAUNCHING = "launching"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True)
class MachineSpec:
    """Everything that defines a VM before it starts. No setters after construction."""

    image: Image
    accel: Accel = Accel.TCG
    cpus: int = 2
    memory_mib: int = 1024
    network: Network = Network.NONE
    boot_mode: BootMode = BootMode.FAST
    boot_timeout: float = 120.0
    kernel_args: tuple[str, ...] = ()
    name: str = "vm"
    # networks a --network user guest may reach although private or link-local (settings'
    # ``network_allow``); not part of the machine's shape (QEMU's argv, snapshots)
    network_allow: tuple[str, ...] = ()
    # caps (settings' ``vm_disk_max_mib``, ``copy_out_max_mib``), not part of the shape
    # either: bytes QEMU may write to the host's disk, and bytes of files one copy_out brings
    disk_max_bytes: int = 8192 << 20
    copy_out_max_bytes: int = 8192 << 20
    # who QEMU runs as (settings' ``qemu_user``, see ``sandbox.resolve_qemu_user``): not
    # part of the shape either
    qemu_user: str = "auto"


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one command in the guest (the system under test, not the harness)."""

    argv: tuple[str, ...]
    exit_code: int | None
    signal: int | None
    timed_out: bool
    duration_s: float
    stdout: bytes = b""
    stderr: bytes = b""
    error: str | None = None

    @property
    def status(self) -> int:
        """A shell-style status: 124 on timeout, 128+N for a signal, else the exit code."""
        if self.timed_out:
            return 124
        if self.signal is not None:
            return 128 + self.signal
        return self.exit_code if self.exit_code is not None else 255

    @property
    def ok(self) -> bool:
        return self.status == 0


OutputCallback = Callable[[bytes], object]


@dataclass(frozen=True)
class ExecOptions:
    """How to run one command: env, cwd, stdin, timeout and streaming callbacks."""

    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    stdin: bytes | None = None
    timeout: float | None = None
    on_stdout: OutputCallback | None = None
    on_stderr: OutputCallback | None = None
    script: bool = False  # argv[0] is a shell script run with /bin/sh -c


class Machine(abc.ABC):
    """One VM, from launch to shutdown. Use as ``async with machine:``."""

    def __init__(self, spec: MachineSpec) -> None:
        self.spec = spec
        self._state = State.IDLE
        self.timings: dict[str, float] = {}
        # the host's running-VM limit: when set, launch waits for a slot, held until stopped
        self.slots: VmSlots | None = None
        self._slot: IO[bytes] | None = None

    @property
    def state(self) -> State:
        return self._state

    def _require(self, *states: State) -> None:
        if self._state not in states:
            allowed = ", ".join(s.value for s in states)
            raise VmStateError(f"machine {self.spec.name} is {self._state.value}; needs {allowed}")

    def _set(self, state: State) -> None:
        self._state = state

    # -- what a backend implements ------------------------------------------------
    @abc.abstractmethod
    async def _launch(self) -> None:
        """Start the VMM and wait until the guest agent has said hello."""

    @abc.abstractmethod
    async def _execute(self, argv: Sequence[str], opts: ExecOptions) -> CommandResult:
        """Run one command in the guest."""

    @abc.abstractmethod
    async def _copy_in(self, host_src: Path, guest_dst: str, timeout: float) -> None: ...

    @abc.abstractmethod
    async def _copy_out(
        self, guest_src: str, host_dst: Path, timeout: float, max_bytes: int
    ) -> None: ...

    @abc.abstractmethod
    async def _soft_shutdown(self, timeout: float) -> bool:
        """Ask the guest to power off; True if the VMM exited within ``timeout``."""

    @abc.abstractmethod
    async def _hard_shutdown(self) -> None:
        """Kill the VMM and remove every file the VM had on the host. Idempotent."""

    # -- what users call ------------------------------------------------------------
    async def launch(self) -> None:
        """Boot the VM; returns once its agent answers. On failure nothing is left behind."""
        self._require(State.IDLE)
        self._set(State.LAUNCHING)
        started = time.monotonic()
        try:
            if self.slots is not None:
                self._slot = await self.slots.acquire()
                self.timings["slot_wait_s"] = time.monotonic() - started
            await self._launch()
        except BaseException:
            await asyncio.shield(self._cleanup_after_failure())
            raise
        self.timings["launch_s"] = time.monotonic() - started
        self._set(State.RUNNING)

    async def _cleanup_after_failure(self) -> None:
        self._set(State.STOPPING)
        try:
            await self._hard_shutdown()
        finally:
            self._release_slot()
        self._set(State.STOPPED)

    def _release_slot(self) -> None:
        if self._slot is not None:
            self._slot.close()
            self._slot = None

    async def execute(self, argv: Sequence[str], opts: ExecOptions | None = None) -> CommandResult:
        """Run ``argv`` in the guest and return its result (a failing command is not an error)."""
        self._require(State.RUNNING)
        return await self._execute(list(argv), opts or ExecOptions())

    async def run(self, script: str, timeout: float | None = None) -> CommandResult:
        """Run a shell script in the guest and return its result with captured output."""
        return await self.execute([script], ExecOptions(script=True, timeout=timeout))

    async def succeed(self, script: str, timeout: float | None = None) -> str:
        """Run a shell script; return its stdout, raise ``VmError`` if it fails."""
        res = await self.run(script, timeout)
        if not res.ok:
            raise VmError(
                f"command failed with status {res.status}: {script}\n"
                f"{res.stderr.decode('utf-8', 'replace')[-2000:]}"
            )
        return res.stdout.decode("utf-8", "replace")

    async def wait_until_succeeds(self, script: str, timeout: float, interval: float = 0.5) -> str:
        """Run ``script`` until it succeeds or ``timeout`` passes (then raise ``VmError``)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            res = await self.run(script, timeout=max(1.0, left))
            if res.ok:
                return res.stdout.decode("utf-8", "replace")
            if time.monotonic() + interval > deadline:
                raise VmError(
                    f"{script!r} did not succeed within {timeout:.0f} s (last status {res.status})"
                )
            await asyncio.sleep(interval)

    async def copy_in(self, host_src: Path, guest_dst: str, timeout: float = 300.0) -> None:
        """Copy a host file or directory tree into the guest directory ``guest_dst`` (modes kept)."""
        self._require(State.RUNNING)
        await self._copy_in(host_src, guest_dst, timeout)

    async def copy_out(
        self, guest_src: str, host_dst: Path, timeout: float = 300.0, max_bytes: int | None = None
    ) -> None:
        """Copy a guest file or directory tree into the host directory ``host_dst`` (modes
        kept). At most ``spec.copy_out_max_bytes`` of files (or ``max_bytes``, when lower)
        come to the host: past it, ``ArchiveLimitError`` and what came before stays."""
        self._require(State.RUNNING)
        quota = self.spec.copy_out_max_bytes
        await self._copy_out(
            guest_src, host_dst, timeout, quota if max_bytes is None else min(quota, max_bytes)
        )

    async def shutdown(self, soft_timeout: float = 5.0, *, graceful: bool = True) -> None:
        """Soft shutdown, then hard after ``soft_timeout``; idempotent, always cleans up.

        ``graceful=False`` skips the soft step: for a throwaway VM whose disk is
        discarded there is nothing for the guest to flush.
        """
        if self._state in (State.STOPPED, State.IDLE):
            self._set(State.STOPPED)
            return
        try:
            if self._state is State.RUNNING and graceful:
                self._set(State.STOPPING)
                try:
                    await self._soft_shutdown(soft_timeout)
                finally:
                    await asyncio.shield(self._hard_shutdown())
            else:
                await asyncio.shield(self._hard_shutdown())
        finally:
            self._release_slot()
        self._set(State.STOPPED)

    async def __aenter__(self) -> Machine:
        await self.launch()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()
