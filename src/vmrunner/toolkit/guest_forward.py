"""The guest half of the toolkit forward: a TCP port in the guest, carried over a
virtio-serial port to the run's services on the host.

Runs in the guest as ``python3 guest_forward.py PORT PORTNAME READYFILE`` (standard
library only, copied in by :mod:`.tunnel`). It listens on ``127.0.0.1:PORT``; every
connection gets an id and its bytes travel as frames on the port named ``PORTNAME``
(``/sys/class/virtio-ports/*/name``): ``type (1 byte) id (4) length (4) payload``, type
1 open, 2 data, 3 close. The host answers with data and close frames for the same id.
It writes READYFILE once listening, and runs until the VM ends.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import time
from pathlib import Path

OPEN, DATA, CLOSE = 1, 2, 3
HEADER = struct.Struct(">BII")


def find_port(name: str, wait: float = 30.0) -> str:
    """The device of the virtio-serial port called ``name`` (waits for the hotplug)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        for entry in Path("/sys/class/virtio-ports").glob("*/name"):
            if entry.read_text().strip() == name and Path("/dev", entry.parent.name).exists():
                return str(Path("/dev", entry.parent.name))
        time.sleep(0.05)
    raise SystemExit(f"no virtio-serial port named {name}")


class Forward:
    """The connections of the guest's port, multiplexed on one device fd."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lock = threading.Lock()
        self.conns: dict[int, socket.socket] = {}

    def send(self, kind: int, conn: int, data: bytes = b"") -> None:
        frame = HEADER.pack(kind, conn, len(data)) + data
        with self.lock:
            view = memoryview(frame)
            while view:
                view = view[os.write(self.fd, view) :]

    def pump(self, conn: int, sock: socket.socket) -> None:
        """Client -> host, until the client closes."""
        try:
            while data := sock.recv(65536):
                self.send(DATA, conn, data)
        except OSError:
            pass
        self.send(CLOSE, conn)

    def read_exact(self, n: int) -> bytes:
        """``n`` bytes from the port. A virtio-serial port reads as end of file while its
        host side is not connected, as it is for a moment after the hot-plug (the guest
        learns of the connection later): that is waited out, never taken as the end. The
        forwarder ends with its VM."""
        out = bytearray()
        while len(out) < n:
            chunk = os.read(self.fd, n - len(out))
            if not chunk:
                time.sleep(0.05)
                continue
            out += chunk
        return bytes(out)

    def demux(self) -> None:
        """Host -> clients, until the port closes."""
        while True:
            kind, conn, size = HEADER.unpack(self.read_exact(HEADER.size))
            data = self.read_exact(size) if size else b""
            sock = self.conns.get(conn)
            if sock is None:
                continue
            try:
                if kind == DATA:
                    sock.sendall(data)
                elif kind == CLOSE:
                    self.conns.pop(conn, None)
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
            except OSError:
                self.conns.pop(conn, None)


def main(port: int, name: str, ready: str) -> None:
    fwd = Forward(os.open(find_port(name), os.O_RDWR))
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(64)
    Path(ready).write_text("ready\n")
    threading.Thread(target=_accept, args=(fwd, server), daemon=True).start()
    fwd.demux()


def _accept(fwd: Forward, server: socket.socket) -> None:
    next_id = 0
    while True:
        sock, _ = server.accept()
        next_id += 1
        fwd.conns[next_id] = sock
        fwd.send(OPEN, next_id)
        threading.Thread(target=fwd.pump, args=(next_id, sock), daemon=True).start()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
