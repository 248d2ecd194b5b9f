"""The QEMU backend: direct kernel boot, a qcow2 overlay, QMP and a virtio-serial agent.

The host creates every channel (QMP, agent: socket pairs) and opens every file before
QEMU starts, and QEMU inherits them as descriptors (:mod:`.vmfds`), so no early output is
lost and QEMU -- possibly as an unprivileged user (:mod:`.sandbox`) -- opens no path of
its own. QEMU runs in its own process group with a parent-death signal, and its pid is
recorded in the VM directory so that gc can reap it after a crash. All of the VM's files
live in that directory, which is removed on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
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
    CommandResult,
    ExecOptions,
    Machine,
    MachineSpec,
    Network,
)
from vmrunner.vm.qemu_args import AGENT_PORT_NAME as AGENT_PORT_NAME
from vmrunner.vm.qemu_args import qemu_argv as qemu_argv
from vmrunner.vm.records import VmRecord, new_record_dir, reap_record
from vmrunner.vm.vmfds import SHAPE_CHANNELS, SHAPE_DISKS, ChannelFds, DiskFds, FdBundle

log = logging.getLogger(__name__)

# Ending QEMU's process group: SIGTERM, this long for it to go, then SIGKILL and at most
# this long more; polled every KILL_POLL_S without blocking the event loop.
KILL_GRACE_S = 1.0
KILL_WAIT_S = 5.0
KILL_POLL_S = 0.02


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
        # who QEMU runs as ("name (uid N)"), once it started
        self.vmm_user: str = ""
        self._fds = FdBundle()
        self._host_ends: list[socket.socket] = []
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

    def credentials(self) -> sandbox.Credentials | None:
        """Who QEMU runs as (``spec.qemu_user``; None: vmrunner's own user)."""
        return sandbox.resolve_qemu_user(self.spec.qemu_user)

    async def _launch(self) -> None:
        t0 = time.monotonic()
        qemu = require_tool("qemu-system-x86_64", "apt-get install qemu-system-x86")
        qemu_img = require_tool("qemu-img", "apt-get install qemu-utils")
        creds = self.credentials()
        self.record = new_record_dir(self.vms_dir)
        sandbox.require_free(self.vmdir, self.spec.disk_max_bytes)
        snap = self._find_snapshot(qemu)
        if snap is not None:
            self.snapshot_used = snap.path
            shutil.copyfile(snap.overlay, self.vmdir / "overlay.qcow2")
        else:
            self._create_disk(qemu_img)
        qmp_end, agent_end, chans = self._open_channels()
        self.argv, env = self._command(qemu, chans)
        if snap is not None:
            self.argv += ["-incoming", f"fd:{self._fds.open(snap.state, os.O_RDONLY)}"]
        saves = snap is None and self.snapshots_dir is not None
        cap = sandbox.file_size_cap(
            self.spec.disk_max_bytes, self.spec.memory_mib, saves_snapshot=saves
        )
        await self._spawn(env, cap, creds)
        self.timings["spawn_s"] = time.monotonic() - t0
        await self._wait_connected(qmp_end, agent_end, snap)
        self.timings["agent_ready_s"] = time.monotonic() - t0
        if saves and self._snap_key:
            assert self.snapshots_dir is not None
            await self._save_snapshot(self.snapshots_dir, self._snap_key)
        log.debug(
            "vm ready", extra={"vm": self.spec.name, "seconds": self.timings["agent_ready_s"]}
        )

    def _find_snapshot(self, qemu: str) -> snapshot.Snapshot | None:
        """The snapshot to start from, if any (and the key a new one would be saved under)."""
        self._snap_key = ""
        if self.snapshots_dir is None:
            return None
        # the VM's name is a label, not part of the machine: VMs of any name share snapshots
        shape = qemu_argv(dataclasses.replace(self.spec, name="vm"), SHAPE_CHANNELS, SHAPE_DISKS)
        self._snap_key = snapshot.snapshot_key(shape, self.spec.image.digest, qemu)
        return snapshot.find(self.snapshots_dir, self._snap_key)

    def _open_channels(self) -> tuple[socket.socket, socket.socket, ChannelFds]:
        """The console log (created here, 0600) and the QMP and agent socket pairs:
        vmrunner's ends, and QEMU's descriptors."""
        console = self._fds.open(self.console_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        qmp_end, qmp_fd = self._fds.socket_pair()
        agent_end, agent_fd = self._fds.socket_pair()
        self._host_ends += [qmp_end, agent_end]
        return qmp_end, agent_end, ChannelFds(console=console, qmp=qmp_fd, agent=agent_fd)

    async def _spawn(
        self, env: dict[str, str] | None, cap: int, creds: sandbox.Credentials | None
    ) -> None:
        """Start QEMU (in the VM's network namespace when it has a network) as ``creds``,
        with its descriptors, then close vmrunner's copies of them and record its pid."""
        assert self.record is not None
        netns_fd = None
        if self.spec.network is Network.USER:
            netns_fd = netns.open_namespace(netns.setup(self.record, self.spec.network_allow))
        try:
            self.proc = await spawn_vmm(
                self.argv, log=self.vmdir / "qemu.log", env=env, pass_fds=self._fds.inherit,
                preexec=sandbox.vmm_child_setup(cap, creds, netns_fd),
            )  # fmt: skip
        except subprocess.SubprocessError as exc:  # the child's setup failed before exec
            raise self._start_error(
                f"cannot start QEMU as {sandbox.describe(creds)}: {exc}"
            ) from exc
        finally:
            self._fds.close()
            if netns_fd is not None:
                os.close(netns_fd)
        self._console_watch = asyncio.create_task(watch_console(self.console_log))
        self.record.vmm_pid = self.proc.pid
        self.record.vmm_ticks = proc_start_ticks(self.proc.pid)
        self.record.extra["vmm_user"] = self.vmm_user = sandbox.describe(creds)
        self.record.save()
        log.info(
            "qemu started",
            extra={"vm": self.spec.name, "pid": self.proc.pid, "user": self.vmm_user},
        )

    def _command(self, qemu: str, chans: ChannelFds) -> tuple[list[str], dict[str, str] | None]:
        """The VMM's argv (sandboxed) and scrubbed environment: kernel, initrd and disks
        opened here and passed as descriptors."""
        image = self.spec.image
        disks = DiskFds(
            kernel=self._fds.readable(image.kernel),
            initrd=self._fds.readable(image.initrd),
            rootfs=self._fds.open(image.rootfs, os.O_RDONLY),
            overlay=self._fds.open(self.vmdir / "overlay.qcow2", os.O_RDWR),
        )
        argv = qemu_argv(self.spec, chans, disks, qemu, self.vmdir)
        return argv + sandbox.sandbox_args(), vmm_env()

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
        self, qmp_end: socket.socket, agent_end: socket.socket, snap: snapshot.Snapshot | None
    ) -> None:
        """QMP's greeting over its socket pair, then the agent's hello (or, from a
        snapshot, the restore)."""
        self.qmp = QMPClient(self.spec.name)
        deadline = time.monotonic() + self.spec.boot_timeout
        qmp_task: asyncio.Future[Any] = asyncio.ensure_future(self.qmp.connect(qmp_end))
        await self._race(qmp_task, "waiting for QEMU's QMP greeting", 30.0)
        reader, writer = await asyncio.open_unix_connection(sock=agent_end, limit=1 << 20)
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
            await snapshot.migrate_to_file(self.qmp, tmp / "state")
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
        self._fds.close()
        for end in self._host_ends:
            end.close()
        if self.proc is not None and self.proc.returncode is None:
            await end_process_group(self.proc.pid)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 5.0)
        if self.record is not None:
            if self.spec.network is Network.USER:
                netns.cleanup(self.record)
            reap_record(self.record)
