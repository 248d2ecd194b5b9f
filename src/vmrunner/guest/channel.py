"""The host's client for the in-guest agent: :class:`GuestChannel`.

The channel wraps one asyncio stream pair (the accepted connection of the Unix
socket QEMU's virtio-serial port connects to; see :func:`accept_channel`). A
background reader task decodes every frame (:mod:`vmrunner.guest.protocol`) and
routes it by request id to a per-request queue, so requests run concurrently.
If the stream ends or speaks nonsense, every waiter gets the ChannelError or
ProtocolError at once and later calls fail fast: nothing hangs.

Every call takes a timeout in seconds; running out of it raises ChannelError. A
command that fails is not an error: ``exec`` returns an :class:`ExecResult`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import posixpath
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias, TypeVar

from vmrunner.errors import ChannelError, ProtocolError, UserInputError
from vmrunner.guest import transfer
from vmrunner.guest.protocol import (
    PROTOCOL_VERSION,
    Data,
    End,
    Exited,
    Failed,
    GuestOpError,
    Hello,
    Message,
    Ok,
    Output,
    Pong,
    Reply,
    check_length,
    decode_payload,
    encode_frame,
)

__all__ = [
    "ChannelError",
    "ExecResult",
    "GuestChannel",
    "GuestOpError",
    "Hello",
    "ProtocolError",
    "accept_channel",
]

log = logging.getLogger(__name__)

STDIN_CHUNK = 64 * 1024
EXEC_SLACK_S = 30.0
"""How much longer than a command's timeout the host waits for its exit frame."""
HIGH_WATER = 4 << 20
"""Bytes of output or archive data waiting for one request before the reader pauses."""
MAX_CAPTURE = 64 << 20
"""Bytes of one stream an exec captures (without a callback) before it is killed."""


class OutputLimitError(ChannelError):
    """A command printed more than :data:`MAX_CAPTURE` bytes to a captured stream."""


_Item: TypeAlias = Reply | BaseException
_R = TypeVar("_R", bound=Reply)


class _Queue(asyncio.Queue[_Item]):
    """One request's replies. Counts the output and data bytes waiting in it: past
    :data:`HIGH_WATER` ``room`` is cleared, and the reader waits for it (flow control:
    a guest cannot make the host buffer more than that for a slow consumer)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0
        self.room = asyncio.Event()
        self.room.set()

    def put_nowait(self, item: _Item) -> None:
        if isinstance(item, Output | Data):
            self.waiting += len(item.data)
            if self.waiting > HIGH_WATER:
                self.room.clear()
        super().put_nowait(item)

    def get_nowait(self) -> _Item:
        item = super().get_nowait()
        if isinstance(item, Output | Data):
            self.waiting -= len(item.data)
            if self.waiting <= HIGH_WATER:
                self.room.set()
        return item


@dataclass(frozen=True, slots=True)
class ExecResult:
    """How a command ended in the guest. A result, not an exception.

    ``exit_code`` is None when a signal ended it (``signal`` says which).
    ``timed_out``: the agent killed it at its timeout. ``duration_s``: from spawn to
    reap, measured in the guest. ``error``: why it could not start (then
    ``exit_code`` is 127 for a missing executable, 126 otherwise) or why the agent
    lost track of it (then ``exit_code`` is None), else None.
    ``stdout``/``stderr``: everything the command wrote to that stream, captured
    only when no callback was given for it (else empty), at most :data:`MAX_CAPTURE`
    bytes (past that the command is killed: OutputLimitError): use callbacks for big output.
    """

    exit_code: int | None
    signal: int | None
    timed_out: bool
    duration_s: float
    error: str | None = None
    stdout: bytes = b""
    stderr: bytes = b""

    @property
    def ok(self) -> bool:
        """True when the command ran and exited 0."""
        return self.exit_code == 0 and not self.timed_out and self.error is None


async def accept_channel(listener: socket.socket, timeout: float) -> GuestChannel:
    """Accept one connection on a listening Unix socket and wrap it (does not wait for hello)."""
    listener.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            conn, _ = await loop.sock_accept(listener)
    except TimeoutError as exc:
        raise ChannelError(f"nothing connected to the guest channel in {timeout:g} s") from exc
    reader, writer = await asyncio.open_unix_connection(sock=conn)
    return GuestChannel(reader, writer)


@contextlib.asynccontextmanager
async def _time_limit(what: str, timeout: float | None) -> AsyncIterator[None]:
    """Raise ChannelError instead of TimeoutError when ``timeout`` seconds pass."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError as exc:
        raise ChannelError(f"guest {what} timed out after {timeout:g} s") from exc


def _again(exc: BaseException) -> BaseException:
    """A fresh copy of a shared channel failure, to raise in one more waiter."""
    if isinstance(exc, ChannelError):
        copy = type(exc)(*exc.args)
        copy.__cause__ = exc.__cause__
        return copy
    return exc


def _require_absolute(path: str) -> None:
    if not posixpath.isabs(path):
        raise ValueError(f"guest path must be absolute: {path!r}")


class GuestChannel:
    """Requests to the guest agent over one stream; safe for concurrent use by many tasks.

    Construct it inside a running event loop: it starts its reader task at once.
    Call :meth:`wait_hello` before anything else; :meth:`close` when done (or use
    ``async with``). Does not own or watch the VM.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._waiters: dict[int, _Queue] = {}
        self._hello: Hello | None = None
        self._hello_seen = asyncio.Event()
        self._failure: ChannelError | None = None
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop())

    async def __aenter__(self) -> GuestChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def hello(self) -> Hello | None:
        """The agent's latest greeting, or None before it arrived."""
        return self._hello

    # --- reading -------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            while True:
                queue = self._dispatch(await self._read_message())
                if queue is not None and not queue.room.is_set():
                    await queue.room.wait()  # the request's consumer is behind
        except ChannelError as exc:
            self._fail(exc)
        except asyncio.IncompleteReadError as exc:
            self._fail(
                ChannelError(f"guest channel closed after {len(exc.partial)} bytes of a frame")
            )
        except OSError as exc:
            self._fail(ChannelError(f"reading the guest channel failed: {exc}"))
        except Exception as exc:  # a bug here must not leave waiters hanging
            log.exception("guest channel reader crashed")
            self._fail(ChannelError(f"guest channel reader crashed: {exc!r}"))

    async def _read_message(self) -> Message:
        prefix = await self._reader.read(4)
        if not prefix:
            raise ChannelError("guest channel closed by the guest (EOF)")
        if len(prefix) < 4:
            prefix += await self._reader.readexactly(4 - len(prefix))
        length = int.from_bytes(prefix, "big")
        check_length(length)
        return decode_payload(await self._reader.readexactly(length))

    def _dispatch(self, msg: Message) -> _Queue | None:
        """Route ``msg``; the queue it went to, if any."""
        if isinstance(msg, Hello):
            self._on_hello(msg)
        elif self._hello is None:
            raise ProtocolError(f"{type(msg).__name__.lower()} frame before the agent's hello")
        elif (waiter := self._waiters.get(msg.id)) is not None:
            waiter.put_nowait(msg)
            return waiter
        else:
            log.debug("dropping %s for finished request %d", type(msg).__name__, msg.id)
        return None

    def _on_hello(self, msg: Hello) -> None:
        if msg.proto != PROTOCOL_VERSION:
            raise ProtocolError(
                f"the agent speaks protocol {msg.proto}, this host speaks {PROTOCOL_VERSION}"
            )
        if self._hello is not None:
            log.warning("guest agent restarted (pid %d); failing requests in flight", msg.pid)
            lost = ChannelError(f"the guest agent restarted (new pid {msg.pid}); request lost")
            for waiter in self._waiters.values():
                waiter.put_nowait(lost)
        self._hello = msg
        self._hello_seen.set()

    def _fail(self, exc: ChannelError) -> None:
        """Record the first failure and hand it to every waiter."""
        if self._failure is None:
            self._failure = exc
            log.debug("guest channel failed: %s", exc)
        for waiter in self._waiters.values():
            waiter.put_nowait(self._failure)
        self._hello_seen.set()

    # --- requests ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _request(self, what: str, timeout: float | None) -> AsyncIterator[tuple[int, _Queue]]:
        """A fresh id and its queue, under a time limit."""
        if self._failure is not None:
            raise _again(self._failure)
        rid = next(self._ids)
        queue = _Queue()
        self._waiters[rid] = queue
        try:
            async with _time_limit(what, timeout):
                yield rid, queue
        finally:
            del self._waiters[rid]
            queue.room.set()  # a reader waiting on it goes on (later frames are dropped)

    async def _send(self, header: Mapping[str, object], body: bytes = b"") -> None:
        self._check_sendable()
        self._writer.write(encode_frame(header, body))
        try:
            await self._writer.drain()
        except OSError as exc:
            raise ChannelError(f"writing to the guest channel failed: {exc}") from exc

    def _send_nowait(self, header: Mapping[str, object]) -> None:
        """Best effort, for cleanup paths that must not wait (kill, abort)."""
        if self._failure is None and not self._writer.is_closing():
            self._writer.write(encode_frame(header))

    def _check_sendable(self) -> None:
        if self._failure is not None:
            raise _again(self._failure)
        if self._hello is None:
            raise ChannelError("request before the agent's hello: call wait_hello() first")

    @staticmethod
    async def _next(queue: _Queue) -> Reply:
        item = await queue.get()
        if isinstance(item, BaseException):
            raise _again(item)
        return item

    async def _expect(self, queue: _Queue, kind: type[_R], what: str) -> _R:
        msg = await self._next(queue)
        if isinstance(msg, kind):
            return msg
        if isinstance(msg, Failed):
            raise GuestOpError(f"guest {what} failed: {msg.message}")
        raise ProtocolError(f"unexpected {type(msg).__name__} frame in reply to {what}")

    def resume(self, hello: Hello) -> None:
        """Treat the channel as greeted by ``hello``, sent before a snapshot was taken.

        For a VM restored from a snapshot: its agent said hello once, at the
        original boot, and will not say it again. Check it answers with ``ping``.
        """
        if self._hello is None:
            self._hello = hello
            self._hello_seen.set()

    async def wait_hello(self, timeout: float) -> Hello:
        """Wait for the agent's greeting (at once if it already came and the channel works)."""
        async with _time_limit("hello", timeout):
            await self._hello_seen.wait()
        if self._failure is not None:
            raise _again(self._failure)
        assert self._hello is not None
        return self._hello

    async def ping(self, timeout: float) -> float:
        """Round trip to the agent; returns the seconds it took."""
        start = time.monotonic()
        async with self._request("ping", timeout) as (rid, queue):
            await self._send({"op": "ping", "id": rid})
            await self._expect(queue, Pong, "ping")
        return time.monotonic() - start

    async def settime(self, epoch: float, timeout: float) -> None:
        """Set the guest's wall clock to ``epoch`` (seconds since 1970, e.g. time.time())."""
        async with self._request("settime", timeout) as (rid, queue):
            await self._send({"op": "settime", "id": rid, "epoch": epoch})
            await self._expect(queue, Ok, "settime")

    async def seed(self, data: bytes, timeout: float) -> None:
        """Mix ``data`` (at most 1 MiB) into the guest's entropy pool; credits no entropy."""
        async with self._request("seed", timeout) as (rid, queue):
            await self._send({"op": "seed", "id": rid}, data)
            await self._expect(queue, Ok, "seed")

    async def shutdown(self, timeout: float) -> None:
        """Ask the agent to sync and power the guest off.

        Returns once the agent acknowledged or the channel closed (the guest went
        down first). Does not wait for the VMM process to exit.
        """
        async with self._request("shutdown", timeout) as (rid, queue):
            await self._send({"op": "shutdown", "id": rid})
            try:
                await self._expect(queue, Ok, "shutdown")
            except (ProtocolError, GuestOpError):
                raise
            except ChannelError as exc:
                log.debug("guest channel closed during shutdown: %s", exc)

    async def close(self) -> None:
        """Stop reading, close the stream and fail pending requests. Idempotent."""
        self._fail(ChannelError("guest channel closed by the host"))
        if not self._reader_task.done():
            self._reader_task.cancel()
            await asyncio.wait([self._reader_task])
        if not self._writer.is_closing():
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()

    # --- exec ------------------------------------------------------------------------------

    async def exec(
        self,
        argv: Sequence[str] | None = None,
        *,
        script: str | None = None,
        shell: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        clear_env: bool = False,
        cwd: str | None = None,
        stdin: bytes | AsyncIterator[bytes] | None = None,
        timeout: float | None = None,
        on_stdout: Callable[[bytes], object] | None = None,
        on_stderr: Callable[[bytes], object] | None = None,
    ) -> ExecResult:
        """Run a command in the guest and return how it ended.

        Give ``argv``, or ``script`` (run as ``shell + [script]``, by default
        ``/bin/sh -c``). ``env`` is laid over the agent's base environment (PATH,
        HOME=/root, LANG=C.UTF-8), or replaces it with ``clear_env``. ``stdin`` is
        /dev/null when None, else bytes or an async iterator of chunks, streamed
        while the command runs. ``timeout`` (seconds, None for no limit) is enforced
        in the guest, which kills the command's process group; the host gives up
        :data:`EXEC_SLACK_S` later with ChannelError. ``on_stdout``/``on_stderr`` get
        each chunk as it arrives, in order (an awaitable they return is awaited);
        without one, that stream is captured into the result.

        If the calling task is cancelled (or anything fails here) the agent is told
        to SIGKILL the command's process group before the exception propagates.
        """
        header = _exec_header(argv, script, shell, env, clear_env, cwd, stdin, timeout)
        wait = None if timeout is None else timeout + EXEC_SLACK_S
        async with self._request("exec", wait) as (rid, queue):
            await self._send({**header, "id": rid})
            feeder = self._start_stdin(rid, stdin, queue)
            try:
                return await self._collect(queue, on_stdout, on_stderr)
            except BaseException:
                self._send_nowait({"op": "kill", "id": rid, "signal": 9})
                raise
            finally:
                if feeder is not None:
                    feeder.cancel()

    def _start_stdin(
        self, rid: int, stdin: bytes | AsyncIterator[bytes] | None, queue: _Queue
    ) -> asyncio.Task[None] | None:
        if stdin is None:
            return None
        task = asyncio.create_task(self._feed_stdin(rid, stdin))

        def report(done: asyncio.Task[None]) -> None:
            if not done.cancelled() and (exc := done.exception()) is not None:
                queue.put_nowait(exc)

        task.add_done_callback(report)
        return task

    async def _feed_stdin(self, rid: int, stdin: bytes | AsyncIterator[bytes]) -> None:
        chunks = _one(stdin) if isinstance(stdin, bytes) else stdin
        async for chunk in chunks:
            for start in range(0, len(chunk), STDIN_CHUNK):
                await self._send({"op": "stdin", "id": rid}, chunk[start : start + STDIN_CHUNK])
        await self._send({"op": "stdin", "id": rid, "eof": True})

    async def _collect(
        self,
        queue: _Queue,
        on_stdout: Callable[[bytes], object] | None,
        on_stderr: Callable[[bytes], object] | None,
    ) -> ExecResult:
        captured = {"stdout": bytearray(), "stderr": bytearray()}
        callbacks = {"stdout": on_stdout, "stderr": on_stderr}
        while True:
            msg = await self._next(queue)
            if isinstance(msg, Output):
                callback = callbacks[msg.stream]
                if callback is None:
                    captured[msg.stream] += msg.data
                    if len(captured[msg.stream]) > MAX_CAPTURE:
                        raise OutputLimitError(
                            f"the command printed more than {MAX_CAPTURE} bytes on "
                            f"{msg.stream} and was killed (give a callback to stream it)"
                        )
                elif inspect.isawaitable(outcome := callback(msg.data)):
                    await outcome
            elif isinstance(msg, Exited):
                return ExecResult(
                    exit_code=msg.exit_code,
                    signal=msg.signal,
                    timed_out=msg.timed_out,
                    duration_s=msg.duration_s,
                    error=msg.error,
                    stdout=bytes(captured["stdout"]),
                    stderr=bytes(captured["stderr"]),
                )
            elif isinstance(msg, Failed):
                raise GuestOpError(f"the agent refused the exec: {msg.message}")
            else:
                raise ProtocolError(f"unexpected {type(msg).__name__} frame during an exec")

    # --- copy ------------------------------------------------------------------------------

    async def copy_in(self, host_src: Path, guest_dst: str, timeout: float) -> None:
        """Copy a host file or directory tree so that it becomes ``guest_dst`` in the guest.

        Keeps modes, mtimes and symlinks; files become owned by root. Directories
        merge into an existing ``guest_dst``; missing parents are created. Streams
        the archive (a worker thread builds it); raises GuestOpError if the guest
        cannot extract it. What was extracted before a failure stays.
        """
        dest, arcname = transfer.plan_copy_in(host_src, guest_dst)
        loop = asyncio.get_running_loop()
        async with self._request("copy_in", timeout) as (rid, queue):
            await self._send({"op": "put", "id": rid, "dest": dest})
            data = {"op": "data", "id": rid}

            def send(chunk: bytes) -> Future[None]:
                return asyncio.run_coroutine_threadsafe(self._send(data, chunk), loop)

            sink = transfer.ChunkSink(send)
            try:
                await asyncio.to_thread(transfer.write_tar, host_src, arcname, sink)
            except BaseException:
                sink.abort()
                self._send_nowait({"op": "end", "id": rid, "abort": True})
                raise
            await self._send({"op": "end", "id": rid})
            await self._expect(queue, Ok, f"copy_in to {guest_dst}")

    async def copy_out(
        self,
        guest_src: str,
        host_dst: Path,
        timeout: float,
        limits: transfer.CopyLimits = transfer.DEFAULT_LIMITS,
    ) -> None:
        """Copy a guest file or directory tree so that it becomes ``host_dst`` on the host.

        Keeps modes (less setuid/setgid and group/other write bits), mtimes and
        relative symlinks inside the tree; never writes outside ``host_dst`` and
        refuses unsafe members (absolute or escaping paths and links, members below
        a symlink, devices) with UnsafeArchiveError, and more than ``limits`` allow
        with ArchiveLimitError. Creates missing parents. Streams: a worker thread
        extracts while frames arrive.
        """
        _require_absolute(guest_src)
        pipe = transfer.ChunkPipe()
        loop = asyncio.get_running_loop()
        async with self._request("copy_out", timeout) as (rid, queue):
            await self._send({"op": "get", "id": rid, "path": guest_src})
            extract = transfer.extract_tar
            extraction = loop.run_in_executor(None, extract, pipe, host_dst, limits)
            extraction.add_done_callback(lambda f: f.cancelled() or f.exception())
            try:
                await self._pump_archive(queue, pipe, extraction, guest_src)
                await extraction
            except BaseException:
                self._send_nowait({"op": "kill", "id": rid, "signal": 9})
                raise
            finally:
                pipe.abort()

    async def _pump_archive(
        self, queue: _Queue, pipe: transfer.ChunkPipe, extraction: asyncio.Future[None], src: str
    ) -> None:
        """Feed data frames to the extracting thread until end (or it failed)."""
        while True:
            msg = await self._next(queue)
            if isinstance(msg, Data):
                if extraction.done() and extraction.exception() is not None:
                    return
                pipe.feed(msg.data)
            elif isinstance(msg, End):
                pipe.feed_eof()
                return
            elif isinstance(msg, Failed):
                raise GuestOpError(f"copy_out of {src} failed in the guest: {msg.message}")
            else:
                raise ProtocolError(f"unexpected {type(msg).__name__} frame during a copy_out")


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _exec_header(
    argv: Sequence[str] | None,
    script: str | None,
    shell: Sequence[str] | None,
    env: Mapping[str, str] | None,
    clear_env: bool,
    cwd: str | None,
    stdin: object,
    timeout: float | None,
) -> dict[str, object]:
    """The exec request's fields. Raises ValueError/UserInputError for unusable input."""
    if (argv is None) == (script is None):
        raise ValueError("give exactly one of argv and script")
    if isinstance(argv, str) or (argv is not None and not argv):
        raise ValueError(f"argv must be a non-empty sequence of strings, not {argv!r}")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be positive, not {timeout!r}")
    header: dict[str, object] = {
        "op": "exec",
        "argv": None if argv is None else list(argv),
        "script": script,
        "shell": None if shell is None else list(shell),
        "env": dict(env or {}),
        "clear_env": clear_env,
        "cwd": cwd,
        "stdin": stdin is not None,
        "timeout": timeout,
    }
    try:
        encode_frame(header)
    except ValueError as exc:
        raise UserInputError(f"command too large for the guest channel: {exc}") from exc
    return header
