"""The host half of ``copy_in`` and ``copy_out``: tar streams built and extracted in threads.

Both directions carry one POSIX (pax) tar stream in data frames. A directory
travels as members ``.``, ``./...`` (so it lands *as* the destination); anything
else as one member (so a file lands *at* the destination path).

* copy_in: :func:`write_tar` runs in a worker thread and writes into a
  :class:`ChunkSink`, which hands full chunks to the event loop and waits for each
  to be written (backpressure, bounded memory). Owners become root in the archive.
* copy_out: the event loop feeds data frames into a :class:`ChunkPipe`;
  :func:`extract_tar` reads it in a worker thread and extracts member by member
  with :mod:`vmrunner.guest.safetar` (no absolute paths, no ``..``, nothing below
  a symlink, no links leaving the destination, no devices, FIFOs or foreign hard
  links, a cap on bytes and members; setuid/setgid and group/other write bits
  dropped, ownership not restored). It does not use tarfile's extraction filters,
  which Python 3.11.2 lacks and older 3.11 releases let be bypassed.
"""

from __future__ import annotations

import io
import posixpath
import queue
import tarfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from vmrunner.errors import UserInputError
from vmrunner.guest import safetar
from vmrunner.guest.protocol import GuestOpError
from vmrunner.guest.safetar import CopyLimits as CopyLimits  # re-exported for callers

DEFAULT_LIMITS = CopyLimits()

TRANSFER_CHUNK = 256 * 1024
_EOF = b""


class TransferAborted(Exception):
    """The other side of a worker thread's stream gave up; the thread stops."""


def plan_copy_in(host_src: Path, guest_dst: str) -> tuple[str, str]:
    """Where the agent extracts, and the archive name of ``host_src``, to copy it to ``guest_dst``.

    ``guest_dst`` names the copy itself, not a directory to put it in. Raises
    ValueError for a relative ``guest_dst`` and UserInputError for a missing source.
    """
    if not posixpath.isabs(guest_dst):
        raise ValueError(f"guest path must be absolute: {guest_dst!r}")
    if not host_src.is_symlink() and not host_src.exists():
        raise UserInputError(f"copy_in: no such host path: {host_src}")
    if host_src.is_dir() and not host_src.is_symlink():
        return guest_dst, "."
    guest_dst = posixpath.normpath(guest_dst)
    if guest_dst == "/":
        raise ValueError(f"cannot copy the file {host_src} over the guest's /")
    return posixpath.dirname(guest_dst), posixpath.basename(guest_dst)


def _owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def write_tar(src: Path, arcname: str, out: ChunkSink) -> None:
    """Archive ``src`` (recursively, symlinks not followed) into ``out``, then flush it."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.add(src, arcname=arcname, filter=_owned_by_root)
    out.flush()


class _StreamOnly:
    """The parts of the file interface tarfile's stream modes never use."""

    def tell(self) -> int:
        raise io.UnsupportedOperation("tell")

    def seek(self, pos: int, /) -> object:
        raise io.UnsupportedOperation("seek")

    def close(self) -> None:
        return None


class ChunkSink(_StreamOnly):
    """A write-only file for a worker thread; full chunks go to ``send``.

    ``send`` must be callable from the thread and return a Future that is done once
    the chunk is written (``asyncio.run_coroutine_threadsafe`` gives one). Writing
    blocks until then; after :meth:`abort` it raises :class:`TransferAborted`.
    """

    def __init__(self, send: Callable[[bytes], Future[None]], chunk: int = TRANSFER_CHUNK) -> None:
        self._send = send
        self._chunk = chunk
        self._buf = bytearray()
        self._aborted = threading.Event()

    def abort(self) -> None:
        """Make the writing thread stop at its next write (callable from any thread)."""
        self._aborted.set()

    def read(self, size: int, /) -> bytes:
        raise io.UnsupportedOperation("read")

    def write(self, data: bytes, /) -> int:
        self._buf += data
        while len(self._buf) >= self._chunk:
            self._ship(bytes(self._buf[: self._chunk]))
            del self._buf[: self._chunk]
        return len(data)

    def flush(self) -> None:
        """Send what is buffered."""
        if self._buf:
            self._ship(bytes(self._buf))
            self._buf.clear()

    def _ship(self, chunk: bytes) -> None:
        if self._aborted.is_set():
            raise TransferAborted("copy_in was abandoned")
        future = self._send(chunk)
        while True:
            try:
                future.result(timeout=0.2)
                return
            except TimeoutError:
                if self._aborted.is_set():
                    future.cancel()
                    raise TransferAborted("copy_in was abandoned") from None


class ChunkPipe(_StreamOnly):
    """A read-only file for a worker thread, fed chunk by chunk from the event loop.

    Feeding never blocks (the queue is unbounded: the host extracts faster than a
    guest sends). Reading blocks until data, EOF (b"") or :meth:`abort`.
    """

    def __init__(self) -> None:
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._buf = memoryview(b"")
        self._ended = False
        self._done = False

    def feed(self, data: bytes) -> None:
        if data and not self._ended:
            self._chunks.put(data)

    def feed_eof(self) -> None:
        if not self._ended:
            self._ended = True
            self._chunks.put(_EOF)

    def abort(self) -> None:
        """Make the reading thread raise TransferAborted (once it has read what came before)."""
        if not self._ended:
            self._ended = True
            self._chunks.put(None)

    def write(self, b: bytes, /) -> object:
        raise io.UnsupportedOperation("write")

    def read(self, size: int = -1, /) -> bytes:
        while not self._buf and not self._done:
            item = self._chunks.get()
            if item is None:
                raise TransferAborted("copy_out was abandoned")
            self._done = item is _EOF
            self._buf = memoryview(item)
        size = len(self._buf) if size < 0 else size
        out, self._buf = bytes(self._buf[:size]), self._buf[size:]
        return out


def extract_tar(source: ChunkPipe, host_dst: Path, limits: CopyLimits = DEFAULT_LIMITS) -> None:
    """Extract the agent's archive of one guest path so that it becomes ``host_dst``.

    Member by member, never writing outside ``host_dst`` (or, for a single file, its
    directory), on every Python: see :mod:`vmrunner.guest.safetar`. Creates missing
    parent directories. Raises UnsafeArchiveError naming a hostile member,
    ArchiveLimitError past ``limits``, GuestOpError for a broken archive or a host
    I/O error (what was extracted before stays), TransferAborted when the pipe is
    aborted. Does not delete anything already at ``host_dst`` but the non-directories
    members replace.
    """
    where = f"copy_out to {host_dst}"
    try:
        safetar.extract_archive(source, host_dst, limits, where)
    except (tarfile.TarError, OSError) as exc:
        raise GuestOpError(f"{where}: {exc}") from exc
