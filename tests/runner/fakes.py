"""A fake guest that runs commands on the host, for fast tests of the runner's logic."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from vmrunner.vm.machine import CommandResult, ExecOptions


class HostGuest:
    """Runs each command as a host subprocess (output is delivered when it ends)."""

    async def execute(self, argv: Sequence[str], opts: ExecOptions | None = None) -> CommandResult:
        opts = opts or ExecOptions()
        return await asyncio.to_thread(self._run, list(argv), opts)

    def _run(self, argv: list[str], opts: ExecOptions) -> CommandResult:
        env = {"PATH": os.environ["PATH"], "HOME": "/root", **opts.env}
        try:
            proc = subprocess.run(argv, input=opts.stdin, capture_output=True, env=env,
                                  cwd=opts.cwd, timeout=opts.timeout, start_new_session=True)  # fmt: skip
            out, err, code, timed_out = proc.stdout, proc.stderr, proc.returncode, False
        except subprocess.TimeoutExpired as exc:
            out, err, code, timed_out = exc.stdout or b"", exc.stderr or b"", None, True
        for data, callback in ((out, opts.on_stdout), (err, opts.on_stderr)):
            if callback is not None and data:
                callback(data)
        return CommandResult(tuple(argv), code, None, timed_out, 0.0,
                             b"" if opts.on_stdout else out, b"" if opts.on_stderr else err)  # fmt: skip

    async def copy_in(self, host_src: Path, guest_dst: str, timeout: float = 300.0) -> None:
        shutil.copytree(host_src, guest_dst, dirs_exist_ok=True)

    async def copy_out(
        self, guest_src: str, host_dst: Path, timeout: float = 300.0, max_bytes: int | None = None
    ) -> None:
        shutil.copytree(guest_src, host_dst, dirs_exist_ok=True)


class HostFactory:
    """A machine factory handing out :class:`HostGuest`; counts the "VMs" it made."""

    def __init__(self) -> None:
        self.accel: str | None = None
        self.images: list[str] = []

    @contextlib.asynccontextmanager
    async def _cm(self, image: str) -> AsyncIterator[HostGuest]:
        self.images.append(image)
        self.accel = "fake"
        yield HostGuest()

    def __call__(self, image: str, name: str) -> contextlib.AbstractAsyncContextManager[HostGuest]:
        return self._cm(image)
