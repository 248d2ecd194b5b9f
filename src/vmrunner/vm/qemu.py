"""The QEMU backend: direct kernel boot, a qcow2 overlay, QMP and a virtio-serial agent.

The host creates every socket (QMP, agent) before QEMU starts and QEMU connects
to them, so no early output is lost. QEMU runs in its own process group with a
parent-death signal, and its pid is recorded in the VM directory so that gc can
reap it after a crash. All of the VM's files live in that directory, which is
removed on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shlex
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient, QMPError

from vmrunner.errors import ChannelError, VmStartError
from vmrunner.guest.channel import GuestChannel
from vmrunner.guest.transfer import CopyLimits
from vmrunner.procs import (
    group_members,
    proc_start_ticks,
    require_tool,
    run_tool,
    spawn_vmm,
    tail,
    vmm_env,
)
from vmrunner.vm import netns, sandbox, snapshot
from vmrunner.vm.machine import (
    Accel,
    BootMode,
    CommandResult,
    ExecOptions,
    Machine,
    MachineSpec,
    Network,
)
from vmrunner.vm.records import VmRecord, new_record_dir, reap_record, socket_dir

log = logging.getLogger(__name__)

AGENT_PORT_NAME = "org.vmrunner.agent"
# Ending QEMU's process group: SIGTERM, this long for it to go, then SIGKILL and at most
# this long more; polled every KILL_POLL_S without blocking the event loop.
KILL_GRACE_S = 1.0
KILL_WAIT_S = 5.0
KILL_POLL_S = 0.02
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
    spec: MachineSpec, vmdir: Path, qemu: str = "qemu-system-x86_64", sockdir: Path | None = None
) -> list[str]:
    """The QEMU command line for ``spec`` with its files in ``vmdir`` (pure).

    ``sockdir`` is a shorter path to the same directory, used for socket names.
    """
    sockdir = sockdir or vmdir
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
        "-kernel", str(spec.image.kernel),
        "-initrd", str(spec.image.initrd),
        "-append", " ".join(args),
        "-drive", f"file={vmdir / 'overlay.qcow2'},if=none,id=root,format=qcow2,cache=unsafe,discard=unmap",
        "-device", "virtio-blk-pci,drive=root",
        "-chardev", f"file,id=console,path={vmdir / 'console.log'},append=on",
        "-serial", "chardev:console",
        "-chardev", f"socket,id=qmp,path={sockdir / 'qmp.sock'}",
        "-mon", "chardev=qmp,mode=control",
        "-device", "virtio-serial-pci",
        "-chardev", f"socket,id=agent,path={sockdir / 'agent.sock'}",
        "-device", f"virtserialport,chardev=agent,name={AGENT_PORT_NAME}",
        "-device", "virtio-rng-pci",
    ]  # fmt: skip
    if spec.network is Network.USER:
        argv += ["-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0"]
    return argv


async def end_process_group(
    pgid: int, grace: float = KILL_GRACE_S, hard_wait: float = KILL_WAIT_S
) -> bool:
    """End process group ``pgid`` without blocking the event loop: SIGTERM, wait up to
    ``grace`` s for its processes to go, then SIGKILL and wait up to ``hard_wait`` s more
    (polling with ``asyncio.sleep``, so the loop keeps serving other tasks). Idempotent: a
    group that is already gone is fine. Returns True once no live process of the group is
    left, False if some still are when the bounded wait ends (it never waits longer)."""
    if await _signal_and_wait(pgid, signal.SIGTERM, grace):
        return True
    return await _signal_and_wait(pgid, signal.SIGKILL, hard_wait)


async def _signal_and_wait(pgid: int, sig: signal.Signals, within: float) -> bool:
    """Send ``sig`` to group ``pgid``; True once the group has no live process (within ``within`` s)."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + within
    while group_members(pgid):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(KILL_POLL_S)
    return True


CONSOLE_CAP = 8 << 20
"""Bytes the console log may reach before it is cut back to its last CONSOLE_KEEP."""
CONSOLE_KEEP = 256 << 10
CONSOLE_POLL_S = 0.5


def cap_file(path: Path, cap: int = CONSOLE_CAP, keep: int = CONSOLE_KEEP) -> bool:
    """If ``path`` (written by another process in append mode) is over ``cap`` bytes, cut
    it back to its last ``keep`` bytes after a line saying so. True when it was cut.
    Bytes appended while it is being cut may be lost (the guest is flooding it)."""
    try:
        if path.stat().st_size <= cap:
            return False
        with path.open("r+b") as f:
            f.seek(-keep, os.SEEK_END)
            last = f.read(keep)
            f.seek(0)
            f.truncate()
            f.write(b"[vmrunner: the console log passed %d bytes and was cut]\n" % cap + last)
    except OSError:
        return False
    return True


async def watch_console(path: Path, cap: int = CONSOLE_CAP, keep: int = CONSOLE_KEEP) -> None:
    """Keep ``path`` under about ``cap`` bytes until cancelled (see :func:`cap_file`)."""
    while True:
        await asyncio.sleep(CONSOLE_POLL_S)
        cap_file(path, cap, keep)


def read_tail(path: Path, lines: int = 40) -> str:
    try:
        return tail(path.read_bytes()[-65536:], lines)
    except OSError:
        return ""


class QemuMachine(Machine):
    """A QEMU VM (KVM or TCG) driven over QMP, with the guest agent on virtio-serial."""

    def __init__(self, spec: MachineSpec, vms_dir: Path, snapshots_dir: Path | None = None) -> None:
        """``snapshots_dir``: start from (or, the first time, save) a post-boot snapshot.

        Snapshots are used only for VMs without a network device (its host-side
        state cannot be restored); others always boot cold.
        """
        super().__init__(spec)
        self.vms_dir = vms_dir
        self.snapshots_dir = snapshots_dir if spec.network is Network.NONE else None
        self.restored = False
        self.snapshot_used: Path | None = None
        self.record: VmRecord | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.qmp: QMPClient | None = None
        self.channel: GuestChannel | None = None
        self.argv: list[str] = []
        self._agent_server: asyncio.Server | None = None
        self._console_watch: asyncio.Task[None] | None = None

    @property
    def vmdir(self) -> Path:
        assert self.record is not None
        return self.record.path

    @property
    def console_log(self) -> Path:
        return self.vmdir / "console.log"

    def _start_error(self, message: str) -> VmStartError:
        status = self.proc.returncode if self.proc is not None else None
        return VmStartError(
            message,
            self.argv,
            status,
            console_tail=read_tail(self.console_log),
            vmm_log_tail=read_tail(self.vmdir / "qemu.log", 20),
        )

    async def _launch(self) -> None:
        t0 = time.monotonic()
        qemu = require_tool("qemu-system-x86_64", "apt-get install qemu-system-x86")
        qemu_img = require_tool("qemu-img", "apt-get install qemu-utils")
        self.record = new_record_dir(self.vms_dir)
        vmdir = self.vmdir
        sandbox.require_free(vmdir, self.spec.disk_max_bytes)
        sockdir = socket_dir(self.record)
        self.argv, env = self._command(qemu, sockdir)
        snap: snapshot.Snapshot | None = None
        self._snap_key = ""
        if self.snapshots_dir is not None:
            # the VM's name is a label, not part of the machine: VMs of any name share snapshots
            shape = qemu_argv(
                dataclasses.replace(self.spec, name="vm"), Path("/vm"), qemu, Path("/vm")
            )
            self._snap_key = snapshot.snapshot_key(shape, self.spec.image.digest, qemu)
            snap = snapshot.find(self.snapshots_dir, self._snap_key)
        if snap is not None:
            self.snapshot_used = snap.path
            shutil.copyfile(snap.overlay, vmdir / "overlay.qcow2")
            self.argv += ["-incoming", f"exec:cat {shlex.quote(str(snap.state))}"]
        else:
            self._create_disk(qemu_img)
        self.qmp = QMPClient(self.spec.name)
        try:
            await self.qmp.start_server(str(sockdir / "qmp.sock"))
        except (QMPError, OSError) as exc:
            raise VmStartError(f"cannot listen for QMP at {sockdir / 'qmp.sock'}: {exc}") from exc
        accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.get_running_loop().create_future()
        )

        def on_agent(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            if not accepted.done():
                accepted.set_result((r, w))
            else:
                w.close()

        self._agent_server = await asyncio.start_unix_server(
            on_agent, path=str(sockdir / "agent.sock"), limit=1 << 20
        )
        argv = self.argv
        if self.spec.network is Network.USER:
            argv = netns.wrap(argv, self.record, self.spec.network_allow)
        saves = snap is None and self.snapshots_dir is not None
        cap = sandbox.file_size_cap(
            self.spec.disk_max_bytes, self.spec.memory_mib, saves_snapshot=saves
        )
        self.proc = await spawn_vmm(
            argv, log=vmdir / "qemu.log", env=env, preexec=sandbox.limit_file_size(cap)
        )
        self._console_watch = asyncio.create_task(watch_console(self.console_log))
        self.record.vmm_pid = self.proc.pid
        self.record.vmm_ticks = proc_start_ticks(self.proc.pid)
        self.record.save()
        self.timings["spawn_s"] = time.monotonic() - t0
        await self._wait_connected(accepted, snap)
        self.timings["agent_ready_s"] = time.monotonic() - t0
        if snap is None and self.snapshots_dir is not None and self._snap_key:
            await self._save_snapshot(self.snapshots_dir, self._snap_key)
        log.debug(
            "vm ready", extra={"vm": self.spec.name, "seconds": self.timings["agent_ready_s"]}
        )

    def _command(self, qemu: str, sockdir: Path) -> tuple[list[str], dict[str, str] | None]:
        """The VMM's argv (sandboxed) and scrubbed environment. A VM that saves or restores
        a snapshot migrates through ``exec:cat``, so it may spawn. QEMU never drops to
        another user (``-runas``): the kernel clears a process's parent-death signal when
        its credentials change, and QEMU must die with vmrunner even after ``kill -9``."""
        snapshots = self.snapshots_dir is not None
        argv = qemu_argv(self.spec, self.vmdir, qemu, sockdir)
        argv += sandbox.sandbox_args(spawn=snapshots, run_as=None)
        return argv, vmm_env()

    def _create_disk(self, qemu_img: str) -> None:
        """The VM's writable disk: a qcow2 overlay on the image's raw root disk."""
        run_tool(
            [qemu_img, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(self.spec.image.rootfs),
             str(self.vmdir / "overlay.qcow2")],
            timeout=30, what="qemu-img create overlay",
        )  # fmt: skip

    async def _race(self, aw: asyncio.Future[Any], what: str, timeout: float) -> Any:
        """Wait for ``aw`` unless QEMU exits or ``timeout`` passes (then raise VmStartError)."""
        assert self.proc is not None
        exited: asyncio.Future[Any] = asyncio.ensure_future(self.proc.wait())
        try:
            done, _ = await asyncio.wait(
                {aw, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            exited.cancel()
        if aw in done:
            exc = aw.exception()
            if exc is None:
                return aw.result()
            if isinstance(exc, VmStartError):
                raise exc
            # The connection broke: most likely QEMU is exiting; give it a moment
            # so that the error carries its exit status and log.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.proc.wait()), 2.0)
            raise self._start_error(f"{what} failed: {exc!r}") from exc
        aw.cancel()
        if exited in done:
            raise self._start_error(f"QEMU exited while {what}")
        raise self._start_error(f"timed out after {timeout:.0f} s {what}")

    async def _wait_connected(
        self,
        accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
        snap: snapshot.Snapshot | None,
    ) -> None:
        assert self.qmp is not None
        deadline = time.monotonic() + self.spec.boot_timeout
        qmp_task: asyncio.Future[Any] = asyncio.ensure_future(self.qmp.accept())
        await self._race(qmp_task, "waiting for QEMU's QMP connection", 30.0)
        reader, writer = await self._race(
            accepted, "waiting for the agent channel connection", 30.0
        )
        self.channel = GuestChannel(reader, writer)
        if snap is not None:
            await self._race(
                asyncio.ensure_future(self._resume(snap)), "restoring the snapshot", 60.0
            )
            return
        left = max(1.0, deadline - time.monotonic())
        hello_task: asyncio.Future[Any] = asyncio.ensure_future(self.channel.wait_hello(left + 1.0))
        try:
            await self._race(hello_task, "waiting for the guest agent to start (boot)", left)
        except ChannelError as exc:
            raise self._start_error(f"guest agent channel failed during boot: {exc}") from exc

    async def _resume(self, snap: snapshot.Snapshot) -> None:
        """Wait for the incoming migration to finish, then check the agent and reset clock and entropy."""
        assert self.qmp is not None and self.channel is not None
        while True:
            status = await self.qmp.execute("query-status")
            state = status.get("status") if isinstance(status, dict) else None
            if state == "running":
                break
            if state != "inmigrate":  # restored, and paused as the snapshot was taken
                await self.qmp.execute("cont")
                break
            await asyncio.sleep(0.01)
        self.channel.resume(snap.hello)
        await self.channel.ping(timeout=30.0)
        await self.channel.settime(time.time(), timeout=10.0)
        await self.channel.seed(os.urandom(64), timeout=10.0)
        self.restored = True

    async def _save_snapshot(self, root: Path, key: str) -> None:
        """Pause, migrate RAM and devices to a file, copy the overlay, resume. Best effort."""
        assert self.qmp is not None and self.channel is not None and self.channel.hello is not None
        t0 = time.monotonic()
        tmp = snapshot.begin(root)
        try:
            await self.qmp.execute("stop")
            target = shlex.quote(str(tmp / "state"))
            await self.qmp.execute("migrate", {"uri": f"exec:cat > {target}"})
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                info = await self.qmp.execute("query-migrate")
                state = info.get("status") if isinstance(info, dict) else None
                if state == "completed":
                    break
                if state in ("failed", "cancelled"):
                    raise VmStartError(f"snapshot migration {state}: {info}")
                await asyncio.sleep(0.05)
            else:
                raise VmStartError("snapshot migration did not complete within 120 s")
            shutil.copyfile(self.vmdir / "overlay.qcow2", tmp / "overlay.qcow2")
            snapshot.commit(root, key, tmp, self.channel.hello)
        except (QMPError, OSError, VmStartError) as exc:
            log.warning("could not save a snapshot: %s", exc)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            with contextlib.suppress(QMPError, OSError):
                await self.qmp.execute("cont")
        self.timings["snapshot_save_s"] = time.monotonic() - t0

    async def _execute(self, argv: Sequence[str], opts: ExecOptions) -> CommandResult:
        assert self.channel is not None
        res = await self.channel.exec(  # without callbacks it captures, bounded (MAX_CAPTURE)
            None if opts.script else list(argv),
            script=argv[0] if opts.script else None,
            env=opts.env,
            cwd=opts.cwd,
            stdin=opts.stdin,
            timeout=opts.timeout,
            on_stdout=opts.on_stdout,
            on_stderr=opts.on_stderr,
        )
        return CommandResult(
            argv=tuple(argv),
            exit_code=res.exit_code,
            signal=res.signal,
            timed_out=res.timed_out,
            duration_s=res.duration_s,
            stdout=res.stdout,
            stderr=res.stderr,
            error=res.error,
        )

    async def _copy_in(self, host_src: Path, guest_dst: str, timeout: float) -> None:
        assert self.channel is not None
        await self.channel.copy_in(host_src, guest_dst, timeout)

    async def _copy_out(
        self, guest_src: str, host_dst: Path, timeout: float, max_bytes: int
    ) -> None:
        assert self.channel is not None
        limits = CopyLimits(max_bytes=max_bytes)
        await self.channel.copy_out(guest_src, host_dst, timeout, limits)

    async def _soft_shutdown(self, timeout: float) -> bool:
        if self.proc is None or self.proc.returncode is not None:
            return True
        if self.channel is not None:
            with contextlib.suppress(ChannelError, asyncio.TimeoutError):
                await self.channel.shutdown(timeout=min(timeout, 2.0))
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
            return True
        except TimeoutError:
            pass
        if self.qmp is not None:
            with contextlib.suppress(QMPError, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(self.qmp.execute("quit"), 2.0)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 2.0)
                return True
        return False

    async def _hard_shutdown(self) -> None:
        if self._console_watch is not None:
            self._console_watch.cancel()
        if self.channel is not None:
            with contextlib.suppress(Exception):
                await self.channel.close()
        if self.qmp is not None:
            with contextlib.suppress(Exception):
                await self.qmp.disconnect()
        if self._agent_server is not None:
            self._agent_server.close()
        if self.proc is not None and self.proc.returncode is None:
            await end_process_group(self.proc.pid)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5.0)
        if self.record is not None:
            if self.spec.network is Network.USER:
                netns.cleanup(self.record)
            reap_record(self.record)
