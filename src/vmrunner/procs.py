"""The one place vmrunner starts processes.

* ``run_tool`` runs a short-lived host tool (qemu-img, mkfs.ext4, mmdebstrap,
  apt-get ...) to completion with a timeout, in its own process group, and raises
  a harness error carrying the argv, exit status and output tail when it fails.
  Given a ``CancelToken`` it polls it while the tool runs and, once it is set,
  kills the whole group at once and raises ``BuildCancelledError``.
* ``spawn_vmm`` starts a long-lived VMM process in its own session (process
  group), with a parent-death signal so that it dies with vmrunner even after
  ``kill -9``, and returns the ``asyncio`` process handle.
* ``stream_tool`` runs a tool whose stderr is read line by line as it streams
  (``nix build --log-format internal-json``), and kills it the moment the
  caller has seen enough.
* ``kill_group`` ends a process group: SIGTERM, then SIGKILL after a grace.

argv is always a list; ``shlex.join`` is only for messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vmrunner.errors import BuildCancelledError, ImageBuildError, ToolMissingError

if TYPE_CHECKING:
    from vmrunner.cancel import CancelToken

PR_SET_PDEATHSIG = 1
CANCEL_POLL_S = 0.1
GROUP_GONE_TIMEOUT_S = 10.0


def require_tool(name: str, hint: str = "") -> str:
    """Return the absolute path of host tool ``name`` or raise ``ToolMissingError``."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise ToolMissingError(name, hint)
    return path


def tail(text: str | bytes, lines: int = 30) -> str:
    """The last ``lines`` lines of ``text`` (bytes are decoded leniently)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def run_tool(
    argv: Sequence[str],
    *,
    timeout: float,
    what: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
    input_bytes: bytes | None = None,
    cancel: CancelToken | None = None,
) -> str:
    """Run ``argv`` to completion and return its stdout (decoded).

    stdout and stderr are captured (and appended to ``log`` when given). On a
    non-zero exit or a timeout the whole process group is killed and
    ``ImageBuildError`` is raised naming ``what``, the argv, the status and the
    output tail. When ``cancel`` is set (checked every ``CANCEL_POLL_S``) the group
    is SIGKILLed at once and ``BuildCancelledError`` is raised once no process of
    the group is left. Does not retry.
    """
    argv = list(argv)
    if cancel is not None:
        cancel.check(what)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ToolMissingError(argv[0]) from exc
    try:
        out, err = _communicate(proc, input_bytes, timeout, cancel)
    except subprocess.TimeoutExpired as exc:
        kill_group(proc.pid, grace=2.0)
        out, err = proc.communicate()
        _append(log, out + err)
        raise ImageBuildError(
            f"{what}: timed out after {timeout:.0f} s", argv, None, tail(out + err)
        ) from exc
    except BuildCancelledError:
        _kill_now(proc)
        _append(log, f"{what}: cancelled (its process group was killed)\n".encode())
        raise BuildCancelledError(f"{what}: cancelled", argv) from None
    except BaseException:
        kill_group(proc.pid, grace=0.5)
        proc.wait()
        raise
    _append(log, out + err)
    if proc.returncode != 0:
        raise ImageBuildError(f"{what} failed", argv, proc.returncode, tail(err or out))
    return out.decode("utf-8", "replace")


def _append(log: Path | None, data: bytes) -> None:
    if log is not None:
        with log.open("ab") as fh:
            fh.write(data)


def _communicate(
    proc: subprocess.Popen[bytes],
    input_bytes: bytes | None,
    timeout: float,
    cancel: CancelToken | None,
) -> tuple[bytes, bytes]:
    """``proc.communicate`` within ``timeout``, raising ``BuildCancelledError`` when ``cancel`` is set."""
    if cancel is None:
        return proc.communicate(input=input_bytes, timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:  # communicate may be called again after a timeout without losing output
        cancel.check("run_tool")
        left = deadline - time.monotonic()
        try:
            return proc.communicate(input=input_bytes, timeout=max(0.0, min(CANCEL_POLL_S, left)))
        except subprocess.TimeoutExpired:
            if left <= CANCEL_POLL_S:
                raise


def _kill_now(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc``'s process group, reap it and wait until no process of the group is left
    (so that the caller may remove what they used). Does not read their output."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    deadline = time.monotonic() + GROUP_GONE_TIMEOUT_S
    while group_members(proc.pid) and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.02)


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes in process group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


VMM_ENV_KEEP = ("LANG", "LC_ALL", "TZ")
VMM_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"


def vmm_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The scrubbed environment a VMM starts with: a fixed ``PATH``, ``HOME=/`` and only
    the locale and time-zone variables of ``base`` (default: vmrunner's own). Nothing
    else -- tokens, secrets, ``VMRUNNER_DATABASE_URL`` -- reaches the VMM."""
    base = os.environ if base is None else base
    env = {"PATH": VMM_PATH, "HOME": "/"}
    env.update({k: base[k] for k in VMM_ENV_KEEP if k in base})
    return env


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded here, not in the forked child


def _set_pdeathsig() -> None:  # runs in the child between fork and exec
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def set_parent_death_signal() -> None:
    """SIGKILL this process when its parent dies; for ``preexec_fn`` (between fork and
    exec, from the event loop's thread: the signal fires when the forking thread ends)."""
    _set_pdeathsig()


def _vmm_setup(first: Callable[[], None] | None, parent: int) -> Callable[[], None]:
    def setup() -> None:  # runs in the child between fork and exec
        if first is not None:
            first()
        _set_pdeathsig()  # last: a change of credentials clears it
        if os.getppid() != parent:  # vmrunner died before the signal was set
            os._exit(1)

    return setup


async def spawn_vmm(
    argv: Sequence[str],
    *,
    log: Path,
    pass_fds: Sequence[int] = (),
    env: Mapping[str, str] | None = None,
    preexec: Callable[[], None] | None = None,
) -> asyncio.subprocess.Process:
    """Start a VMM in its own session; it is SIGKILLed if vmrunner dies.

    stdout and stderr go to ``log``; stdin is /dev/null. The environment is ``env``,
    else :func:`vmm_env` (never vmrunner's own). Does not wait for the
    guest to boot. Must be called from the event loop's (main) thread: the
    parent-death signal fires when the forking thread ends. The signal survives
    ``execve``, so a launcher script that ``exec``s QEMU keeps it. ``preexec`` runs in
    the child before the signal is set (limits, credentials: see ``vm.sandbox``): the
    kernel clears the signal whenever the credentials change, so it must come last.
    ``pass_fds`` are inherited under the same numbers. A failing ``preexec`` raises
    ``subprocess.SubprocessError``.
    """
    parent = os.getpid()
    with log.open("ab") as fh:
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=fh,
                start_new_session=True,
                pass_fds=tuple(pass_fds),
                env=vmm_env() if env is None else dict(env),
                preexec_fn=_vmm_setup(preexec, parent),
            )
        except FileNotFoundError as exc:
            raise ToolMissingError(argv[0], "install qemu-system-x86") from exc


def pid_alive(pid: int) -> bool:
    """True if a process with ``pid`` exists (zombies count as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def proc_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (to detect pid reuse)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def kill_group(pgid: int, grace: float = 3.0) -> None:
    """SIGTERM process group ``pgid``, then SIGKILL it after ``grace`` seconds.

    Idempotent: a group that is already gone is fine.
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pgid):
            break
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def run_capture(
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[int | None, bytes, bytes]:
    """Run a short host command (``git`` ...) and return (exit status, stdout, stderr);
    the status is None when it timed out (its process group is then killed). ``env``
    replaces the environment when given. Never raises for the command's failure; raises
    ``ToolMissingError`` when it is not found.
    """
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=None if env is None else dict(env),
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise ToolMissingError(argv[0]) from exc
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        kill_group(proc.pid, grace=0.2)
        out, err = proc.communicate()
        return None, out, err
    except BaseException:
        kill_group(proc.pid, grace=0.2)
        proc.wait()
        raise


@dataclass(frozen=True)
class StreamOutcome:
    """How a streamed process ended: ``status`` is None when it was stopped or timed out."""

    status: int | None
    stdout: str
    stopped: bool
    timed_out: bool


async def stream_tool(
    argv: Sequence[str],
    *,
    timeout: float,
    on_line: Callable[[str], bool],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> StreamOutcome:
    """Run ``argv`` in its own process group, calling ``on_line`` for each stderr line as
    it arrives; stdout is collected. When ``on_line`` returns True (or ``timeout``
    passes, or the caller is cancelled) the whole group is killed at once. Never
    raises for the tool's own failure; does not retry.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=None if env is None else dict(env), cwd=cwd, start_new_session=True,
            limit=1 << 24,
        )  # fmt: skip
    except FileNotFoundError as exc:
        raise ToolMissingError(argv[0]) from exc
    assert proc.stdout is not None and proc.stderr is not None
    out = asyncio.ensure_future(proc.stdout.read())
    stopped = False

    async def pump(stream: asyncio.StreamReader) -> None:
        nonlocal stopped
        while line := await stream.readline():
            if on_line(line.decode("utf-8", "replace").rstrip("\n")):
                stopped = True
                return

    deadline = time.monotonic() + timeout
    try:
        await asyncio.wait_for(pump(proc.stderr), timeout)
        if not stopped:
            await asyncio.wait_for(proc.wait(), max(0.1, deadline - time.monotonic()))
        timed_out = False
    except TimeoutError:
        timed_out = True
    except BaseException:
        await asyncio.to_thread(kill_group, proc.pid, 0.5)
        raise
    if stopped or timed_out:
        await asyncio.to_thread(kill_group, proc.pid, 0.5)
    await proc.wait()
    status = None if stopped or timed_out else proc.returncode
    return StreamOutcome(status, (await out).decode("utf-8", "replace"), stopped, timed_out)


def run_probe(argv: Sequence[str], *, timeout: float) -> tuple[int | None, str]:
    """Run a short probe; return (exit status, stdout then stderr, decoded), or
    (None, output) if it timed out (its process group is then killed). Never raises
    for the probe's failure; raises ``ToolMissingError`` when it is not found.
    """
    status, out, err = run_capture(argv, timeout=timeout)
    return status, (out + err).decode("utf-8", "replace")
