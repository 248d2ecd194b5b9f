"""vmrunner guest agent: runs commands and moves files inside the guest VM.

Standard library only, one self-contained file. It is copied into the image as
``/usr/lib/vmrunner/agent.py`` and started by the guest's init as
``python3 -u /usr/lib/vmrunner/agent.py``; it keeps its import cost low because it
starts under slow emulation (no asyncio; tarfile, socket and ctypes load lazily).

Usage: ``agent.py [--device PATH] [--connect unix:PATH] [--no-poweroff]``

* no option: find the virtio-serial port named ``org.vmrunner.agent`` (its
  ``/sys/class/virtio-ports/vportNpM/name``), waiting up to 30 s for it, and open
  ``/dev/vportNpM`` once, read-write, using the one fd both ways;
* ``--device PATH``: open that character device instead;
* ``--connect unix:PATH``: connect to a Unix socket (tests, debugging); never powers off;
* ``--no-poweroff``: ``shutdown`` syncs and exits instead of powering the machine off.

The agent exits when the host closes the channel (EOF), killing the process groups
of the commands still running. Exit status 0 on EOF or shutdown, 1 when the channel
cannot be opened or written, 2 on a protocol violation or bad usage.

Wire protocol, version 1
========================

One byte stream carries frames in both directions::

    +--------------------+--------------------------------+--------------+
    | length: u32, BE    | header: JSON object + b"\\n"    | body: bytes  |
    +--------------------+--------------------------------+--------------+

``length`` counts the header (with its newline) and the body. The header is one
line of compact UTF-8 JSON (JSON escapes newlines inside strings, so the first
``\\n`` ends it); the body is raw bytes, possibly empty. Limits: header at most
1 MiB (``MAX_HEADER``), body at most 1 MiB (``MAX_BODY``), hence ``length`` at most
2 MiB. A frame that breaks them or the rules below is a protocol violation: the
stream cannot be resynchronised, so the receiver gives up on the channel.

Every header has ``"op"``. The host numbers its requests with ``"id"`` (a positive
integer, never reused on one channel); every frame about a request carries its id,
so requests run concurrently and their frames interleave. Frames for an id the
receiver no longer knows (a finished or cancelled request) are dropped.

Agent to host, unprompted, first thing after opening the channel (the host sends
nothing before it; a second hello means the agent restarted)::

    hello   {"proto": 1, "agent": "0.1.0", "uptime": 12.5, "kernel": "6.1.0-27-amd64", "pid": 301}

Requests (host to agent) and what comes back (``error`` is ``{"message": str}``;
it also answers a request with bad fields, a duplicate id or an unknown op)::

    ping      {}                                         -> pong
    exec      {"argv": [str] | null, "script": str | null, "shell": [str] | null,
               "env": {str: str}, "clear_env": bool, "cwd": str | null,
               "stdin": bool, "timeout": float | null}   -> stdout*, stderr*, exit
    stdin     {"eof": bool} + body: bytes for the command's stdin (eof ends it)
    kill      {"signal": int}    signal an exec's process group, or abort a put/get;
                                 no reply (the exec still ends with its exit frame)
    put       {"dest": dir}      then data* (body: tar bytes), then
    end       {"abort": bool}                            -> ok | error
    get       {"path": str}                              -> data*, end | error
    settime   {"epoch": float}   set CLOCK_REALTIME      -> ok | error
    seed      {} + body: bytes written to /dev/urandom   -> ok | error
    shutdown  {}                 sync, reply, power off  -> ok

exec: exactly one of ``argv`` and ``script``; a script runs as ``shell + [script]``
(``shell`` defaults to ``["/bin/sh", "-c"]``). The environment is ``env`` over the
base environment (``PATH``, ``HOME=/root``, ``LANG=C.UTF-8``), or ``env`` alone with
``clear_env``. stdin is ``/dev/null`` unless ``"stdin": true``, then it is fed from
stdin frames. The command runs in a new session (its own process group).
``stdout``/``stderr`` frames carry its output as it comes (bodies of at most 64 KiB),
then one ``exit`` frame::

    exit    {"exit_code": int | null, "signal": int | null, "timed_out": bool,
             "duration_s": float, "error": str | null}

``duration_s`` runs from spawn to reap, measured in the guest. A command that cannot
start is an exit frame, not a crash: ``exit_code`` 127 when the executable is
missing, 126 for anything else (not executable, bad ``cwd``), with ``error`` saying
why. At ``timeout`` the group gets SIGTERM, then SIGKILL 0.5 s later if the command
still runs; once it has exited the group gets SIGKILL and ``timed_out`` is true.
All output is sent before the exit frame: after the command exits, its pipes are
drained until EOF; if something still holds them 0.5 s later (a background job
started with ``cmd &``), the pipes are abandoned and the exit frame is sent. Such
background processes keep running, as they do between the steps of a GitHub
Actions job (they get EPIPE or SIGPIPE if they write to the abandoned pipes later;
redirect their output); they end when the VM does.

put/get: the bodies are one tar stream (POSIX pax). put extracts it into ``dest``
(created if missing), keeping modes and mtimes. get sends ``path`` (not followed if
a symlink): a directory as members ``.``, ``./...``; anything else as a single member
named after its basename.
"""

# pathlib would cost imports at boot, under emulation: plain os.path here.
# ruff: noqa: PTH103, PTH110, PTH119, PTH208
from __future__ import annotations

import io
import json
import os
import queue
import selectors
import signal
import struct
import subprocess
import sys
import threading
import time

TYPE_CHECKING = False  # mypy treats this name as True; typing is not imported at run time
if TYPE_CHECKING:
    from collections.abc import Callable

    Header = dict[str, object]
    Handler = Callable[[int, Header, bytes], None]

PROTOCOL_VERSION = 1
AGENT_VERSION = "0.1.0"
PORT_NAME = "org.vmrunner.agent"
MAX_HEADER = 1 << 20
MAX_BODY = 1 << 20
OUTPUT_CHUNK = 64 << 10
TRANSFER_CHUNK = 256 << 10
KILL_GRACE = 0.5
DRAIN_GRACE = 0.5
POLL_INTERVAL = 0.05
PORT_WAIT = 30.0
RB_POWER_OFF = 0x4321FEDC
DEFAULT_SHELL = ("/bin/sh", "-c")
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
}
_LENGTH = struct.Struct(">I")


class ProtocolViolation(Exception):
    """The host broke the framing rules; the stream cannot be trusted any more."""


class ChannelClosed(Exception):
    """Writing to the channel failed: the host end is gone."""


class BadRequest(Exception):
    """A well-framed request with wrong fields; answered with an error frame."""


class Aborted(Exception):
    """The host aborted a transfer."""


def log(message: str) -> None:
    """Write one line to stderr (the guest console)."""
    sys.stderr.write(f"vmrunner-agent: {message}\n")


class Channel:
    """Frames over one file descriptor: a blocking reader and a locked writer."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()
        self._in = io.BufferedReader(io.FileIO(fd, "r", closefd=False), 1 << 18)

    def send(self, header: Header, body: bytes = b"") -> None:
        """Write one frame atomically (one write call unless the device cuts it short)."""
        head = json.dumps(header, separators=(",", ":")).encode() + b"\n"
        frame = memoryview(_LENGTH.pack(len(head) + len(body)) + head + body)
        with self._lock:
            try:
                while frame:
                    frame = frame[os.write(self.fd, frame) :]
            except OSError as exc:
                raise ChannelClosed(str(exc)) from exc

    def recv(self) -> tuple[Header, bytes] | None:
        """Read one frame; None at a clean EOF. Raises ProtocolViolation."""
        prefix = self._in.read(4)
        if not prefix:
            return None
        if len(prefix) < 4:
            raise ProtocolViolation("EOF inside a frame's length prefix")
        (length,) = _LENGTH.unpack(prefix)
        if length > MAX_HEADER + MAX_BODY:
            raise ProtocolViolation(f"frame length {length} exceeds {MAX_HEADER + MAX_BODY}")
        payload = self._in.read(length)
        if len(payload) < length:
            raise ProtocolViolation(f"EOF after {len(payload)} of {length} frame bytes")
        return split_payload(payload)


def split_payload(payload: bytes) -> tuple[Header, bytes]:
    """Split a frame (without its length prefix) into its JSON header and body."""
    end = payload.find(b"\n", 0, MAX_HEADER)
    if end < 0:
        raise ProtocolViolation(f"frame header has no newline in its first {MAX_HEADER} bytes")
    if len(payload) - end - 1 > MAX_BODY:
        raise ProtocolViolation(f"frame body exceeds {MAX_BODY} bytes")
    try:
        header = json.loads(payload[:end])
    except ValueError as exc:
        raise ProtocolViolation(f"frame header is not JSON: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(header.get("op"), str):
        raise ProtocolViolation("frame header is not a JSON object with a string 'op'")
    return header, payload[end + 1 :]


# --- request fields -------------------------------------------------------------------


def opt_str(h: Header, key: str) -> str | None:
    """The string field ``key``, or None when missing or null."""
    v = h.get(key)
    if v is None or isinstance(v, str):
        return v
    raise BadRequest(f"field {key!r} must be a string")


def opt_str_list(h: Header, key: str) -> list[str] | None:
    """The list-of-strings field ``key``, or None when missing or null."""
    v = h.get(key)
    if v is None:
        return None
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return v
    raise BadRequest(f"field {key!r} must be a list of strings")


def str_map(h: Header, key: str) -> dict[str, str]:
    """The string-to-string object field ``key``; empty when missing or null."""
    v = h.get(key)
    if v is None:
        return {}
    if isinstance(v, dict) and all(isinstance(x, str) for x in v.values()):
        return v
    raise BadRequest(f"field {key!r} must map strings to strings")


def flag(h: Header, key: str) -> bool:
    """The boolean field ``key``; False when missing."""
    v = h.get(key, False)
    if isinstance(v, bool):
        return v
    raise BadRequest(f"field {key!r} must be a boolean")


def number(h: Header, key: str, default: float | None = None) -> float | None:
    """The numeric field ``key``, or ``default`` when missing or null."""
    v = h.get(key)
    if v is None:
        return default
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    raise BadRequest(f"field {key!r} must be a number")


# --- exec -----------------------------------------------------------------------------


class ExecSpec:
    """What to run, parsed from an exec request. Raises BadRequest."""

    def __init__(self, h: Header) -> None:
        argv, script = opt_str_list(h, "argv"), opt_str(h, "script")
        if (argv is None) == (script is None):
            raise BadRequest("exactly one of 'argv' and 'script' is required")
        if script is not None:
            shell = opt_str_list(h, "shell")
            argv = [*(shell or DEFAULT_SHELL), script]
        if not argv:
            raise BadRequest("'argv' is empty")
        env = str_map(h, "env")
        self.argv = argv
        self.env = dict(env) if flag(h, "clear_env") else {**BASE_ENV, **env}
        self.cwd = opt_str(h, "cwd")
        self.stdin = flag(h, "stdin")
        self.timeout = number(h, "timeout")
        if self.timeout is not None and self.timeout <= 0:
            raise BadRequest("field 'timeout' must be positive")


def spawn_failure(exc: Exception, spec: ExecSpec) -> tuple[int, str]:
    """The shell-like exit code and message for a command that could not start."""
    if spec.cwd is not None and getattr(exc, "filename", None) == spec.cwd:
        return 126, f"cannot use working directory {spec.cwd!r}: {getattr(exc, 'strerror', exc)}"
    if isinstance(exc, FileNotFoundError):
        return 127, f"executable not found: {spec.argv[0]!r}"
    return 126, f"cannot execute {spec.argv[0]!r}: {exc}"


def pidfd_open(pid: int) -> int | None:
    """A pidfd for ``pid`` (readable once it exits), or None where unsupported."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


class ExecJob:
    """One command: spawn, stream its output, enforce its timeout, report its end."""

    def __init__(self, channel: Channel, rid: int, spec: ExecSpec) -> None:
        self.channel, self.rid, self.spec = channel, rid, spec
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[bytes] | None = None
        self.pending_signal = 0
        self.done = False
        self.stdin: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.timed_out = False
        self.killed = False  # the group got SIGKILL from us
        self.exited_at: float | None = None

    def feed(self, data: bytes | None) -> None:
        """Queue stdin bytes for the command; None closes its stdin."""
        self.stdin.put(data)

    def cancel(self, sig: int) -> None:
        """Send ``sig`` to the command's process group (later, if not spawned yet)."""
        with self.lock:
            if self.proc is None:
                self.pending_signal = sig
            elif not self.done:
                self.signal_group(sig)

    def signal_group(self, sig: int) -> None:
        """Signal the whole process group, ignoring a group that is already gone."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def run(self) -> None:
        """Thread body: run the command to its end and send its exit frame."""
        try:
            self._run()
        except ChannelClosed:
            self.signal_group(signal.SIGKILL)
        except Exception as exc:  # noqa: BLE001 - report it rather than leave the host waiting
            self.signal_group(signal.SIGKILL)
            log(f"exec {self.rid} failed in the agent: {exc!r}")
            try:
                self._send_exit(None, 0.0, f"agent failure: {exc!r}")
            except ChannelClosed:
                pass
        finally:
            with self.lock:
                self.done = True
            self.stdin.put(None)

    def _run(self) -> None:
        spec, start = self.spec, time.monotonic()
        try:
            proc = subprocess.Popen(
                spec.argv,
                stdin=subprocess.PIPE if spec.stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=spec.cwd,
                env=spec.env,
                start_new_session=True,
                bufsize=0,
            )
        except (OSError, ValueError) as exc:
            code, message = spawn_failure(exc, spec)
            self._send_exit(code, time.monotonic() - start, message)
            return
        with self.lock:
            self.proc = proc
            if self.pending_signal:
                self.signal_group(self.pending_signal)
        if proc.stdin is not None:
            threading.Thread(target=self._feed_stdin, args=(proc.stdin,), daemon=True).start()
        self._pump(proc, start)
        rc = proc.returncode
        self._send_exit(rc if rc >= 0 else None, (self.exited_at or start) - start, None, -rc)

    def _feed_stdin(self, pipe: io.RawIOBase) -> None:
        try:
            while (data := self.stdin.get()) is not None:
                view = memoryview(data)
                while view:
                    view = view[os.write(pipe.fileno(), view) :]
        except OSError:
            pass  # the command closed its stdin: the rest is dropped
        finally:
            pipe.close()

    def _pump(self, proc: subprocess.Popen[bytes], start: float) -> None:
        """Forward output until the command exited and its pipes are closed (or abandoned)."""
        assert proc.stdout is not None and proc.stderr is not None
        streams = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
        sel = selectors.DefaultSelector()
        for fd, name in streams.items():
            sel.register(fd, selectors.EVENT_READ, name)
        pidfd = pidfd_open(proc.pid)
        if pidfd is not None:
            sel.register(pidfd, selectors.EVENT_READ, "exit")
        deadline = start + self.spec.timeout if self.spec.timeout else None
        try:
            while streams or proc.returncode is None:
                for key, _ in sel.select(self._wait(proc, deadline, polling=pidfd is None)):
                    if key.data == "exit":
                        sel.unregister(key.fd)
                        proc.wait()
                        self._reaped()
                    elif not self._forward(key.fd, key.data):
                        sel.unregister(key.fd)
                        del streams[key.fd]
                if pidfd is None and proc.returncode is None and proc.poll() is not None:
                    self._reaped()
                if self._tick(proc, deadline, bool(streams)):
                    break
        finally:
            sel.close()
            if pidfd is not None:
                os.close(pidfd)
            proc.stdout.close()
            proc.stderr.close()

    def _reaped(self) -> None:
        self.exited_at = time.monotonic()
        if self.timed_out:  # the whole group goes, not only its leader
            self.killed = True
            self.signal_group(signal.SIGKILL)

    def _wait(self, proc: subprocess.Popen[bytes], deadline: float | None, polling: bool) -> float:
        """Seconds until the next timer of :meth:`_tick` is due (at most 1 s)."""
        now = time.monotonic()
        times = [now + 1.0]
        if proc.returncode is None:
            if polling:
                times.append(now + POLL_INTERVAL)
            if deadline is not None:
                times += [deadline, deadline + KILL_GRACE]
        elif self.exited_at is not None:
            times.append(self.exited_at + DRAIN_GRACE)
        return min(t for t in times if t > now) - now

    def _tick(self, proc: subprocess.Popen[bytes], deadline: float | None, open_: bool) -> bool:
        """Enforce the timeout and the drain grace; True when the pipes are abandoned."""
        now = time.monotonic()
        if proc.returncode is None:
            if deadline is not None and now >= deadline and not self.timed_out:
                self.timed_out = True
                self.signal_group(signal.SIGTERM)
            elif deadline is not None and now >= deadline + KILL_GRACE and not self.killed:
                self.killed = True
                self.signal_group(signal.SIGKILL)
            return False
        exited = self.exited_at if self.exited_at is not None else now
        return open_ and now >= exited + DRAIN_GRACE

    def _forward(self, fd: int, stream: str) -> bool:
        """Send what one pipe has; False at its EOF."""
        try:
            data = os.read(fd, OUTPUT_CHUNK)
        except OSError:
            data = b""
        if data:
            self.channel.send({"op": stream, "id": self.rid}, data)
        return bool(data)

    def _send_exit(self, code: int | None, took: float, error: str | None, sig: int = 0) -> None:
        self.channel.send(
            {
                "op": "exit",
                "id": self.rid,
                "exit_code": code,
                "signal": sig if sig > 0 else None,
                "timed_out": self.timed_out,
                "duration_s": took,
                "error": error,
            }
        )


# --- put / get ------------------------------------------------------------------------


def tar_filter_kwargs() -> dict[str, str]:
    """Extraction options that trust the host's archive on every Python version."""
    import tarfile

    return {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}


class QueueReader:
    """A read-only file over chunks put in a queue; None ends it, Aborted aborts it."""

    def __init__(self) -> None:
        self.chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self.buf = memoryview(b"")
        self.eof = False
        self.aborted = False

    def read(self, size: int = -1) -> bytes:
        while not self.buf and not self.eof:
            item = self.chunks.get()
            if item is None:
                self.eof = True
            else:
                self.buf = memoryview(item)
        if self.aborted:
            raise Aborted("the host aborted the transfer")
        size = len(self.buf) if size < 0 else size
        out, self.buf = bytes(self.buf[:size]), self.buf[size:]
        return out

    def drain(self) -> None:
        """Consume the queue up to its end, so the feeding thread never blocks."""
        while not self.eof:
            self.eof = self.chunks.get() is None


class PutJob:
    """Extract a tar stream sent in data frames into a guest directory."""

    def __init__(self, channel: Channel, rid: int, dest: str) -> None:
        self.channel, self.rid, self.dest = channel, rid, dest
        self.reader = QueueReader()

    def feed(self, data: bytes | None, abort: bool = False) -> None:
        """Queue archive bytes (blocks while 16 chunks wait); None ends the archive."""
        self.reader.aborted = self.reader.aborted or abort
        self.reader.chunks.put(data)

    def cancel(self, _sig: int) -> None:
        self.feed(None, abort=True)

    def run(self) -> None:
        import tarfile

        try:
            os.makedirs(self.dest, exist_ok=True)
            with tarfile.open(fileobj=self.reader, mode="r|") as tar:  # type: ignore[call-overload]
                tar.extractall(self.dest, **tar_filter_kwargs())
            error = None
        except Exception as exc:  # noqa: BLE001 - any failure is reported to the host
            error = f"extracting into {self.dest!r} failed: {exc}"
        finally:
            self.reader.drain()
        if self.reader.aborted:
            error = "aborted by the host"
        try_reply(self.channel, self.rid, error)


class FrameWriter:
    """A write-only file that sends what is written as data frames."""

    def __init__(self, channel: Channel, rid: int) -> None:
        self.channel, self.rid = channel, rid
        self.buf = bytearray()
        self.aborted = False

    def write(self, data: bytes) -> int:
        if self.aborted:
            raise Aborted("the host aborted the transfer")
        self.buf += data
        while len(self.buf) >= TRANSFER_CHUNK:
            self.channel.send({"op": "data", "id": self.rid}, bytes(self.buf[:TRANSFER_CHUNK]))
            del self.buf[:TRANSFER_CHUNK]
        return len(data)

    def flush_rest(self) -> None:
        if self.buf:
            self.channel.send({"op": "data", "id": self.rid}, bytes(self.buf))
            self.buf.clear()


class GetJob:
    """Send a guest path as a tar stream in data frames, then end (or error)."""

    def __init__(self, channel: Channel, rid: int, path: str) -> None:
        self.channel, self.rid, self.path = channel, rid, path
        self.out = FrameWriter(channel, rid)

    def cancel(self, _sig: int) -> None:
        self.out.aborted = True

    def run(self) -> None:
        import stat
        import tarfile

        try:
            is_dir = stat.S_ISDIR(os.lstat(self.path).st_mode)
            arcname = "." if is_dir else os.path.basename(os.path.normpath(self.path))
            fmt = tarfile.PAX_FORMAT
            with tarfile.open(fileobj=self.out, mode="w|", format=fmt) as tar:  # type: ignore[call-overload]
                tar.add(self.path, arcname=arcname)
            self.out.flush_rest()
            self.channel.send({"op": "end", "id": self.rid})
        except ChannelClosed:
            pass
        except Exception as exc:  # noqa: BLE001 - any failure is reported to the host
            try_reply(self.channel, self.rid, f"archiving {self.path!r} failed: {exc}")


class Workers:
    """Reusable daemon threads that run jobs: starting a thread costs about a
    millisecond under emulation, a large part of a command's round trip."""

    def __init__(self) -> None:
        self.tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.idle = 0
        self.lock = threading.Lock()

    def submit(self, task: Callable[[], None]) -> None:
        """Run ``task`` on an idle worker, or on a new one if none is idle."""
        with self.lock:
            spawn = self.idle == 0
            if not spawn:
                self.idle -= 1
        self.tasks.put(task)
        if spawn:
            threading.Thread(target=self._loop, name="worker", daemon=True).start()

    def _loop(self) -> None:
        while True:
            task = self.tasks.get()
            try:
                task()
            except Exception:  # noqa: BLE001  (a job reports its own errors; keep the worker)
                pass
            with self.lock:
                self.idle += 1


RNDADDENTROPY = 0x40085203
RNDRESEEDCRNG = 0x5207


def _reseed_crng(fd: int, data: bytes) -> None:
    """Credit ``data`` as entropy and force a CRNG reseed (root only; else a no-op)."""
    import fcntl
    import struct

    if os.geteuid() != 0 or not data:
        return
    try:
        fcntl.ioctl(fd, RNDADDENTROPY, struct.pack("ii", len(data) * 8, len(data)) + data)
        fcntl.ioctl(fd, RNDRESEEDCRNG)
    except OSError:
        pass


def reply_status(channel: Channel, rid: int, error: str | None) -> None:
    """Send ``ok``, or ``error`` with ``error`` as its message."""
    if error is None:
        channel.send({"op": "ok", "id": rid})
    else:
        channel.send({"op": "error", "id": rid, "message": error})


def try_reply(channel: Channel, rid: int, error: str | None) -> None:
    """:func:`reply_status` from a worker thread: a closed channel ends the agent anyway."""
    try:
        reply_status(channel, rid, error)
    except ChannelClosed:
        pass


# --- the agent ------------------------------------------------------------------------


def power_off() -> None:
    """Power the machine off: reboot(RB_POWER_OFF), else ``poweroff -f``. Returns on failure."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.reboot(RB_POWER_OFF) != 0:
        log(f"reboot(RB_POWER_OFF) failed: {os.strerror(ctypes.get_errno())}; trying poweroff -f")
        subprocess.run(["poweroff", "-f"], check=False)


class Agent:
    """Reads requests on the channel and dispatches them; long work runs in threads."""

    def __init__(self, channel: Channel, poweroff: bool) -> None:
        self.channel = channel
        self.poweroff = poweroff
        self.jobs: dict[int, ExecJob | PutJob | GetJob] = {}
        self.lock = threading.Lock()
        self.workers = Workers()
        self.stopping = False
        self.handlers: dict[str, Handler] = {
            "ping": self.on_ping,
            "exec": self.on_exec,
            "stdin": self.on_stdin,
            "kill": self.on_kill,
            "put": self.on_put,
            "data": self.on_data,
            "end": self.on_end,
            "get": self.on_get,
            "settime": self.on_settime,
            "seed": self.on_seed,
            "shutdown": self.on_shutdown,
        }

    def hello(self) -> None:
        """Send the greeting the host waits for before its first request."""
        try:
            with open("/proc/uptime") as f:
                uptime = float(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            uptime = 0.0
        self.channel.send(
            {
                "op": "hello",
                "proto": PROTOCOL_VERSION,
                "agent": AGENT_VERSION,
                "uptime": uptime,
                "kernel": os.uname().release,
                "pid": os.getpid(),
            }
        )

    def serve(self) -> int:
        """Answer requests until EOF or shutdown; returns the process exit status."""
        try:
            while not self.stopping and (frame := self.channel.recv()) is not None:
                self.dispatch(*frame)
            return 0
        except ProtocolViolation as exc:
            log(f"protocol violation, giving up: {exc}")
            return 2
        except ChannelClosed as exc:
            log(f"channel closed: {exc}")
            return 1
        finally:
            self.cancel_all()

    def dispatch(self, header: Header, body: bytes) -> None:
        """Run the handler of one request; bad fields are answered with an error frame."""
        op, rid = header["op"], header.get("id")
        if not isinstance(rid, int) or isinstance(rid, bool) or rid <= 0:
            raise ProtocolViolation(f"{op!r} frame without a positive integer 'id'")
        handler = self.handlers.get(str(op))
        if handler is None:
            reply_status(self.channel, rid, f"unknown op {op!r}")
            return
        try:
            handler(rid, header, body)
        except BadRequest as exc:
            reply_status(self.channel, rid, f"{op}: {exc}")

    def start(self, rid: int, job: ExecJob | PutJob | GetJob) -> None:
        """Register ``job`` under ``rid`` and run it in its own thread."""
        with self.lock:
            if rid in self.jobs:
                raise BadRequest(f"id {rid} is already in use")
            self.jobs[rid] = job

        def run() -> None:
            try:
                job.run()
            finally:
                with self.lock:
                    self.jobs.pop(rid, None)

        self.workers.submit(run)

    def job(self, rid: int) -> ExecJob | PutJob | GetJob | None:
        with self.lock:
            return self.jobs.get(rid)

    def cancel_all(self) -> None:
        """Kill every running command's process group and abort transfers."""
        with self.lock:
            jobs = list(self.jobs.values())
        for job in jobs:
            job.cancel(signal.SIGKILL)

    def on_ping(self, rid: int, h: Header, body: bytes) -> None:
        self.channel.send({"op": "pong", "id": rid})

    def on_exec(self, rid: int, h: Header, body: bytes) -> None:
        self.start(rid, ExecJob(self.channel, rid, ExecSpec(h)))

    def on_stdin(self, rid: int, h: Header, body: bytes) -> None:
        job = self.job(rid)
        if isinstance(job, ExecJob):
            if body:
                job.feed(body)
            if flag(h, "eof"):
                job.feed(None)

    def on_kill(self, rid: int, h: Header, body: bytes) -> None:
        job = self.job(rid)
        sig = number(h, "signal")
        if job is not None:
            job.cancel(int(sig) if sig else signal.SIGKILL)

    def on_put(self, rid: int, h: Header, body: bytes) -> None:
        dest = opt_str(h, "dest")
        if not dest:
            raise BadRequest("field 'dest' is required")
        self.start(rid, PutJob(self.channel, rid, dest))

    def on_data(self, rid: int, h: Header, body: bytes) -> None:
        job = self.job(rid)
        if isinstance(job, PutJob) and body:
            job.feed(body)

    def on_end(self, rid: int, h: Header, body: bytes) -> None:
        job = self.job(rid)
        if isinstance(job, PutJob):
            job.feed(None, abort=flag(h, "abort"))

    def on_get(self, rid: int, h: Header, body: bytes) -> None:
        path = opt_str(h, "path")
        if not path:
            raise BadRequest("field 'path' is required")
        self.start(rid, GetJob(self.channel, rid, path))

    def on_settime(self, rid: int, h: Header, body: bytes) -> None:
        epoch = number(h, "epoch")
        if epoch is None:
            raise BadRequest("field 'epoch' is required")
        try:
            time.clock_settime(time.CLOCK_REALTIME, epoch)
        except OSError as exc:
            raise BadRequest(f"cannot set the clock: {exc}") from exc
        reply_status(self.channel, rid, None)

    def on_seed(self, rid: int, h: Header, body: bytes) -> None:
        """Mix ``body`` into the entropy pool, then reseed the CRNG when allowed.

        A VM restored from a snapshot would otherwise keep producing the random
        numbers every other restore of the same snapshot produces. As root the
        bytes are credited (RNDADDENTROPY) and the CRNG reseeded at once
        (RNDRESEEDCRNG); otherwise they are only mixed in.
        """
        try:
            with open("/dev/urandom", "wb") as f:
                f.write(body)
                _reseed_crng(f.fileno(), body)
        except OSError as exc:
            raise BadRequest(f"cannot write /dev/urandom: {exc}") from exc
        reply_status(self.channel, rid, None)

    def on_shutdown(self, rid: int, h: Header, body: bytes) -> None:
        os.sync()
        reply_status(self.channel, rid, None)
        self.stopping = True
        if self.poweroff:
            self.cancel_all()
            os.sync()
            power_off()


# --- opening the channel --------------------------------------------------------------


def find_port(name: str, timeout: float) -> str:
    """The /dev path of the virtio-serial port called ``name``, waiting for it to appear."""
    deadline = time.monotonic() + timeout
    base = "/sys/class/virtio-ports"
    while True:
        try:
            ports = os.listdir(base)
        except OSError:
            ports = []
        for port in ports:
            try:
                with open(f"{base}/{port}/name") as f:
                    found = f.read().strip() == name
            except OSError:
                continue
            if found and os.path.exists(f"/dev/{port}"):
                return f"/dev/{port}"
        if time.monotonic() >= deadline:
            raise OSError(f"no virtio-serial port named {name!r} appeared within {timeout:g} s")
        time.sleep(0.1)


def open_channel(device: str | None, connect: str | None) -> int:
    """Open the channel's one file descriptor, used for both reading and writing."""
    if connect is not None:
        import socket

        if not connect.startswith("unix:"):
            raise OSError(f"unsupported --connect address {connect!r} (want unix:PATH)")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(connect[len("unix:") :])
        return sock.detach()
    path = device or find_port(PORT_NAME, PORT_WAIT)
    return os.open(path, os.O_RDWR | os.O_NOCTTY)


USAGE = "usage: agent.py [--device PATH] [--connect unix:PATH] [--no-poweroff]"


def parse_args(argv: list[str]) -> dict[str, str | None]:
    """The options as a dict with keys device, connect, poweroff. Raises ValueError."""
    opts: dict[str, str | None] = {"device": None, "connect": None, "poweroff": "yes"}
    args = iter(argv)
    for arg in args:
        key, _, value = arg.partition("=")
        if key in ("--device", "--connect"):
            opts[key[2:]] = value or next(args, None) or ""
            if not opts[key[2:]]:
                raise ValueError(f"{key} needs a value")
        elif arg == "--no-poweroff":
            opts["poweroff"] = None
        else:
            raise ValueError(f"unknown argument {arg!r}")
    return opts


def main(argv: list[str] | None = None) -> int:
    """Run the agent; returns its exit status (see the module docstring)."""
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as exc:
        sys.stderr.write(f"{exc}\n{USAGE}\n")
        return 2
    try:
        fd = open_channel(opts["device"], opts["connect"])
    except OSError as exc:
        log(f"cannot open the channel: {exc}")
        return 1
    poweroff = opts["poweroff"] is not None and opts["connect"] is None
    agent = Agent(Channel(fd), poweroff=poweroff)
    try:
        agent.hello()
    except ChannelClosed as exc:
        log(f"cannot send hello: {exc}")
        return 1
    return agent.serve()


if __name__ == "__main__":
    sys.exit(main())
