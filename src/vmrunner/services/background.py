"""``vmrunner serve``'s background process: the scheduler, the outbox sender, the
reconciler and the local worker, beside the HTTP process.

This module is the HTTP process's side (:class:`Background`); the child's side is
:func:`vmrunner.services.server.run_background`. Why a process of its own: the webhook answer must not wait for planning (``git fetch``
of every pushed commit, reading workflows) or for the worker's VMs. In one process they
share one interpreter lock, and a burst of deliveries slowed every acknowledgement
(``bench/webhook_bench.py``). The HTTP process keeps every delivery before it answers;
this process acts on what was kept.

The child is started in its own session with a parent-death signal (SIGKILL), so a
``kill -9`` of ``serve`` takes it and, through their own parent-death signals, its VMs
with it (the next ``serve`` reaps their records and their runs). Its stdin is a pipe
from the HTTP process: each byte wakes the scheduler (a delivery was kept); end of file
or SIGTERM drains it (nothing new claimed, running runs finish or are cancelled after
the grace period). When it dies on its own, the HTTP process starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from vmrunner.procs import set_parent_death_signal

log = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0
"""How long the HTTP process waits before it starts a background process that died."""

STOP_MARGIN_S = 30.0
"""How long past the grace period a draining background process may take before it is
killed (its VMs are being torn down, its reports sent)."""


def child_argv(workers: int | None, grace_s: float, verbose: int = 0) -> list[str]:
    """The background process's command line (the hidden ``serve-background`` command)."""
    argv = [sys.executable, "-m", "vmrunner", *(["-" + "v" * verbose] if verbose else [])]
    argv += ["serve-background", "--grace", str(grace_s)]
    return argv + ([] if workers is None else ["--workers", str(workers)])


class Background:
    """The HTTP process's handle on its background process: start, wake, restart, drain."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=asyncio.subprocess.PIPE, start_new_session=True,
            preexec_fn=set_parent_death_signal,
        )  # fmt: skip
        self.starts += 1
        log.info("background process %d started", self.proc.pid)

    def wake(self) -> None:
        """Tell the scheduler a delivery was kept (never blocks; a full pipe already
        holds a wake-up)."""
        stdin = self.proc.stdin if self.proc is not None else None
        if stdin is None or stdin.is_closing():
            return
        with contextlib.suppress(OSError, RuntimeError):
            transport: Any = stdin.transport
            if transport.get_write_buffer_size() == 0:
                stdin.write(b"w")

    async def supervise(self, stop: asyncio.Event) -> None:
        """Keep a background process running until ``stop``; then drain it."""
        while not stop.is_set():
            if self.proc is None or self.proc.returncode is not None:
                await self.start()
            assert self.proc is not None
            ended = asyncio.ensure_future(self.proc.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait([ended, stopping], return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if ended.done() and not stop.is_set():
                log.error("background process exited with %s; starting another", ended.result())
                await asyncio.sleep(RESTART_DELAY_S)
            else:
                ended.cancel()

    async def drain(self, grace_s: float) -> None:
        """SIGTERM, wait up to ``grace_s`` + :data:`STOP_MARGIN_S`, then kill its group."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace_s + STOP_MARGIN_S)
        except TimeoutError:
            log.error("background process %d did not drain; killing it", proc.pid)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
