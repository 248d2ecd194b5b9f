"""Run the real agent on the host, connected to a GuestChannel over a Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import vmrunner.guest.agent
from vmrunner.guest.channel import GuestChannel, accept_channel

AGENT = Path(vmrunner.guest.agent.__file__)
# The guest runs Debian bookworm's python3 (3.11.2): use the same when the host has it.
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable

T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    """Run one async test body in a fresh event loop, with an overall time limit."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await main()

    return asyncio.run(bounded())


@contextlib.contextmanager
def listening_socket() -> Iterator[tuple[socket.socket, str]]:
    """A listening Unix socket in a short temporary path (sun_path is ~107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="vmr-") as tmp:
        path = str(Path(tmp) / "agent.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with listener:
            listener.bind(path)
            listener.listen(1)
            yield listener, path


def start_agent(path: str, *extra: str) -> subprocess.Popen[bytes]:
    """The agent as a child process, isolated from site-packages like in the guest."""
    argv = [PYTHON, "-I", "-S", "-u", str(AGENT), "--connect", f"unix:{path}", "--no-poweroff"]
    return subprocess.Popen([*argv, *extra], stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int:
    """Wait for the agent to exit (it does on EOF), killing it if it does not."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    finally:
        if proc.stderr is not None:
            proc.stderr.close()


@contextlib.asynccontextmanager
async def agent_channel() -> AsyncIterator[tuple[GuestChannel, subprocess.Popen[bytes]]]:
    """A greeted channel to a fresh agent; closes it and reaps the agent afterwards."""
    with listening_socket() as (listener, path):
        proc = start_agent(path)
        try:
            chan = await accept_channel(listener, timeout=10)
        except BaseException:
            proc.kill()
            stop(proc)
            raise
        try:
            await chan.wait_hello(10)
            yield chan, proc
        finally:
            await chan.close()
            await asyncio.to_thread(stop, proc)


async def pty_channel(master: int) -> GuestChannel:
    """A GuestChannel over a pty master: the agent opens the slave like a virtio port."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    await loop.connect_read_pipe(lambda: protocol, os.fdopen(master, "rb", buffering=0))
    out = asyncio.StreamReaderProtocol(asyncio.StreamReader())
    pipe = os.fdopen(os.dup(master), "wb", buffering=0)
    transport, _ = await loop.connect_write_pipe(lambda: out, pipe)
    return GuestChannel(reader, asyncio.StreamWriter(transport, out, reader, loop))


def gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


async def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    """Poll until ``pid`` is gone; False if it still runs after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not gone(pid):
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def kill_quietly(pid: int) -> None:
    """Clean up a process a failed test may have left behind."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
