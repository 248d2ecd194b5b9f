"""The host half of the toolkit forward: a job VM reaches its run's services.

The services listen on a Unix socket only (:mod:`.service`), so nothing on the host's
network, loopback included, reaches them, and a VM needs no network device at all.
For each job VM, :func:`attach` hot-plugs a virtio-serial port into the running VM over
QMP (``chardev-add`` of one end of a socket pair, passed as a descriptor, then
``device_add virtserialport``), copies :mod:`.guest_forward` in and starts it: the
guest's ``127.0.0.1:GUEST_PORT`` then leads, connection by connection, to this run's
socket (frames described there). Only that VM holds the port; another run's VMs have
their own ports, to their own run's socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Any

from vmrunner.toolkit.guest_forward import CLOSE, DATA, HEADER, OPEN
from vmrunner.vm.machine import ExecOptions

GUEST_PORT = 40781
PORT_NAME = "org.vmrunner.toolkit"
GUEST_SCRIPT = "/run/vmrunner-toolkit-forward.py"
READY = "/run/vmrunner-toolkit.ready"


class TunnelError(Exception):
    """The forward could not be set up in the VM."""


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Tunnel:
    """One VM's forward to the service socket ``target``."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.conns: dict[int, asyncio.StreamWriter] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self, port: Streams) -> None:
        """Carry frames over ``port`` (our end of the VM's port) until QEMU's side closes
        (the VM stopped)."""
        reader, writer = port
        try:
            while True:
                kind, conn, size = HEADER.unpack(await reader.readexactly(HEADER.size))
                data = await reader.readexactly(size) if size else b""
                await self._frame(writer, kind, conn, data)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for w in self.conns.values():
                w.close()
            writer.close()

    async def _frame(self, qemu: asyncio.StreamWriter, kind: int, conn: int, data: bytes) -> None:
        if kind == OPEN:
            try:
                r, w = await asyncio.open_unix_connection(str(self.target))
            except OSError:
                qemu.write(HEADER.pack(CLOSE, conn, 0))
                return
            self.conns[conn] = w
            self._spawn(self._pump(qemu, conn, r))
        elif kind == DATA and conn in self.conns:
            self.conns[conn].write(data)
            await self.conns[conn].drain()
        elif kind == CLOSE and conn in self.conns:
            self.conns.pop(conn).close()

    async def _pump(self, qemu: asyncio.StreamWriter, conn: int, r: asyncio.StreamReader) -> None:
        """Service -> guest for connection ``conn``, then a close frame."""
        with contextlib.suppress(ConnectionError):
            while data := await r.read(65536):
                qemu.write(HEADER.pack(DATA, conn, len(data)) + data)
                await qemu.drain()
            qemu.write(HEADER.pack(CLOSE, conn, 0))
        self.conns.pop(conn, None)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()


async def _hotplug(qmp: Any, tag: str) -> Streams:
    """Hot-plug the port: its chardev is one end of a socket pair, handed to QEMU over QMP
    (``getfd``), so QEMU -- possibly another user -- opens no path; the other end, returned,
    is the connection :meth:`Tunnel.serve` carries."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        qmp.send_fd_scm(theirs.fileno())
        await qmp.execute("getfd", {"fdname": f"tkfd{tag}"})
    finally:
        theirs.close()  # QEMU has its own copy
    port = await asyncio.open_unix_connection(sock=ours)
    addr = {"type": "fd", "data": {"str": f"tkfd{tag}"}}
    backend = {"type": "socket", "data": {"addr": addr, "server": False}}
    await qmp.execute("chardev-add", {"id": f"tk{tag}", "backend": backend})
    await qmp.execute("device_add", {"driver": "virtserialport", "id": f"tkport{tag}",
                                     "chardev": f"tk{tag}", "name": PORT_NAME})  # fmt: skip
    return port


async def attach(guest: Any, target: Path, tag: str = "0") -> Tunnel:
    """Give ``guest`` (a running QEMU VM) its forward to ``target``; raises
    :class:`TunnelError` when the VM cannot take it."""
    tunnel = Tunnel(target)
    try:
        tunnel._spawn(tunnel.serve(await _hotplug(guest.qmp, tag)))
        script = Path(__file__).with_name("guest_forward.py").read_bytes()
        start = (f"cat > {GUEST_SCRIPT} && rm -f {READY} && (setsid python3 {GUEST_SCRIPT} "
                 f"{GUEST_PORT} {PORT_NAME} {READY} </dev/null >/dev/null 2>&1 &) && "
                 f"i=0; while [ ! -e {READY} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; "
                 f"test -e {READY}")  # fmt: skip
        res = await guest.execute(["sh", "-c", start], ExecOptions(stdin=script, timeout=90))
        if not res.ok:
            raise TunnelError(f"the toolkit forward did not start in the VM: {res.stderr!r}")
    except BaseException:
        await tunnel.close()
        raise
    return tunnel
