"""The real agent, run on the host over a Unix socket and driven through GuestChannel."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import time
import tty
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vmrunner.errors import ChannelError

from .harness import AGENT, PYTHON, agent_channel, kill_quietly, pty_channel, run, stop, wait_gone

pytestmark = pytest.mark.timeout(60)  # each test takes well under a second or two


def test_hello_ping_seed_and_shutdown() -> None:
    async def main() -> None:
        async with agent_channel() as (chan, proc):
            hello = await chan.wait_hello(1)
            assert (hello.proto, hello.pid, hello.kernel) == (1, proc.pid, os.uname().release)
            assert hello.uptime_s > 0
            assert await chan.ping(5) > 0
            await chan.seed(os.urandom(64), 5)
            await chan.shutdown(5)
            assert await asyncio.to_thread(stop, proc) == 0

    run(main)


@pytest.mark.parametrize("code", [0, 1, 42])
def test_exit_codes(code: int) -> None:
    async def main() -> None:
        async with agent_channel() as (chan, _):
            result = await chan.exec(script=f"exit {code}")
            assert (result.exit_code, result.signal, result.timed_out) == (code, None, False)
            assert result.error is None and result.ok == (code == 0)
            assert result.duration_s > 0

    run(main)


def test_stdout_and_stderr_stay_apart_and_in_order() -> None:
    script = "for i in $(seq 300); do echo out $i; echo err $i >&2; done"
    want_out = b"".join(b"out %d\n" % i for i in range(1, 301))
    want_err = b"".join(b"err %d\n" % i for i in range(1, 301))

    async def main() -> None:
        async with agent_channel() as (chan, _):
            captured = await chan.exec(script=script)
            assert (captured.stdout, captured.stderr) == (want_out, want_err)
            chunks: list[bytes] = []
            streamed = await chan.exec(script=script, on_stdout=chunks.append)
            assert b"".join(chunks) == want_out
            assert (streamed.stdout, streamed.stderr) == (b"", want_err)

    run(main)


def test_20_mb_of_output_arrives_intact() -> None:
    code = (
        "import hashlib, os, sys\n"
        "data = os.urandom(20_000_000)\n"
        "sys.stderr.write(hashlib.sha256(data).hexdigest())\n"
        "sys.stdout.buffer.write(data)\n"
    )

    async def main() -> None:
        async with agent_channel() as (chan, _):
            digest = hashlib.sha256()
            sizes: list[int] = []

            async def take(chunk: bytes) -> None:  # an awaitable callback is awaited
                digest.update(chunk)
                sizes.append(len(chunk))

            result = await chan.exec([PYTHON, "-c", code], on_stdout=take)
            assert result.exit_code == 0
            assert sum(sizes) == 20_000_000 and max(sizes) <= 64 * 1024
            assert digest.hexdigest() == result.stderr.decode()

    run(main)


def test_binary_output_and_stdin_round_trip() -> None:
    every_byte = bytes(range(256)) * 1024
    code = "import sys; sys.stdout.buffer.write(bytes(range(256)) * 1024)"

    async def main() -> None:
        async with agent_channel() as (chan, _):
            assert (await chan.exec([PYTHON, "-c", code])).stdout == every_byte
            echoed = await chan.exec(["cat"], stdin=every_byte * 3)
            assert echoed.stdout == every_byte * 3
            assert (await chan.exec(["cat"])).stdout == b""  # no stdin: /dev/null

    run(main)


def test_stdin_is_streamed_while_the_command_runs() -> None:
    async def main() -> None:
        async with agent_channel() as (chan, _):
            answered = asyncio.Event()

            async def lines() -> AsyncIterator[bytes]:
                yield b"first\n"
                await answered.wait()  # only sent once the command answered the first line
                yield b"second\n"

            out: list[bytes] = []

            def seen(chunk: bytes) -> None:
                out.append(chunk)
                if b"<first>" in b"".join(out):
                    answered.set()

            script = 'while read -r line; do echo "<$line>"; done'
            result = await chan.exec(script=script, stdin=lines(), on_stdout=seen)
            assert (result.exit_code, b"".join(out)) == (0, b"<first>\n<second>\n")

    run(main)


def test_env_cwd_shell_and_clear_env(tmp_path: Path) -> None:
    async def main() -> None:
        async with agent_channel() as (chan, _):
            show = 'printf "%s|%s|%s|%s" "$FOO" "$PWD" "$HOME" "$LANG"'
            result = await chan.exec(script=show, env={"FOO": "a b"}, cwd=str(tmp_path))
            assert result.stdout.decode() == f"a b|{tmp_path}|/root|C.UTF-8"
            bare = await chan.exec(["/usr/bin/env"], env={"ONLY": "1"}, clear_env=True)
            assert bare.stdout == b"ONLY=1\n"
            via_python = await chan.exec(script="print(6 * 7)", shell=[PYTHON, "-c"])
            assert via_python.stdout == b"42\n"

    run(main)


def test_commands_that_cannot_start(tmp_path: Path) -> None:
    not_executable = tmp_path / "script.sh"
    not_executable.write_text("#!/bin/sh\ntrue\n")

    async def main() -> None:
        async with agent_channel() as (chan, _):
            missing = await chan.exec(["/no/such/program", "arg"])
            assert missing.exit_code == 127
            assert missing.error == "executable not found: '/no/such/program'"
            denied = await chan.exec([str(not_executable)])
            assert denied.exit_code == 126 and "Permission denied" in (denied.error or "")
            no_cwd = await chan.exec(["true"], cwd=str(tmp_path / "gone"))
            assert no_cwd.exit_code == 126
            assert no_cwd.error == f"cannot use working directory '{tmp_path}/gone': " + (
                "No such file or directory"
            )
            assert (await chan.exec(["true"])).ok  # the agent is fine

    run(main)


def test_timeout_kills_the_whole_process_group_promptly() -> None:
    async def main() -> None:
        async with agent_channel() as (chan, _):
            result = await chan.exec(script="sleep 30 & echo $!; sleep 30", timeout=0.3)
            grandchild = int(result.stdout)
            try:
                assert result.timed_out and result.exit_code is None
                assert result.signal == signal.SIGTERM
                assert 0.3 <= result.duration_s < 5
                assert await wait_gone(grandchild)
            finally:
                kill_quietly(grandchild)

    run(main)


def test_timeout_escalates_to_sigkill() -> None:
    async def main() -> None:
        async with agent_channel() as (chan, _):
            stubborn = "trap '' TERM; echo ready; while :; do sleep 0.05; done"
            result = await chan.exec(script=stubborn, timeout=0.2)
            assert (result.timed_out, result.signal) == (True, signal.SIGKILL)
            assert result.stdout == b"ready\n"

    run(main)


def test_background_child_holding_the_pipes_does_not_hang_the_exec_and_survives() -> None:
    """``cmd &`` in a step: the exec ends promptly, the background job keeps running
    (as between the steps of a GitHub Actions job) until the agent ends."""

    async def main() -> None:
        async with agent_channel() as (chan, _):
            started = time.monotonic()
            result = await chan.exec(script="sleep 30 & echo $!; echo bye")
            assert time.monotonic() - started < 10
            background = int(result.stdout.split()[0])
            try:
                assert (result.exit_code, result.stdout.split()[1]) == (0, b"bye")
                os.kill(background, 0)  # still alive
                again = await chan.exec(argv=["kill", "-0", str(background)])
                assert again.exit_code == 0
            finally:
                kill_quietly(background)

    run(main)


def test_two_execs_run_concurrently() -> None:
    async def main() -> None:
        async with agent_channel() as (chan, _):
            release = asyncio.Event()

            async def held() -> AsyncIterator[bytes]:
                await release.wait()
                yield b"done\n"

            first = asyncio.create_task(chan.exec(["cat"], stdin=held()))
            second = await chan.exec(script="echo quick")  # finishes while the first waits
            assert second.stdout == b"quick\n" and not first.done()
            release.set()
            assert (await first).stdout == b"done\n"

    run(main)


def test_cancelling_the_host_task_kills_the_command() -> None:
    async def main() -> None:
        async with agent_channel() as (chan, _):
            started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(
                chan.exec(
                    script="echo $$; exec sleep 30", on_stdout=lambda c: started.set_result(int(c))
                )
            )
            pid = await started
            try:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert await wait_gone(pid)
                assert (await chan.exec(["true"])).ok
            finally:
                kill_quietly(pid)

    run(main)


def test_agent_death_fails_pending_execs_with_channel_error() -> None:
    async def main() -> None:
        async with agent_channel() as (chan, proc):
            started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(
                chan.exec(
                    script="echo $$; exec sleep 30", on_stdout=lambda c: started.set_result(int(c))
                )
            )
            pid = await started
            try:
                proc.kill()
                with pytest.raises(ChannelError, match="closed by the guest"):
                    await task
                with pytest.raises(ChannelError, match="closed by the guest"):
                    await chan.ping(1)
            finally:
                kill_quietly(pid)

    run(main)


def test_agent_kills_its_commands_when_the_host_hangs_up() -> None:
    async def main() -> None:
        async with agent_channel() as (chan, proc):
            started: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(
                chan.exec(
                    script="echo $$; exec sleep 30", on_stdout=lambda c: started.set_result(int(c))
                )
            )
            pid = await started
            try:
                await chan.close()
                with pytest.raises(ChannelError, match="closed by the host"):
                    await task
                assert await asyncio.to_thread(proc.wait, 5) == 0
                assert await wait_gone(pid)
            finally:
                kill_quietly(pid)

    run(main)


def test_device_mode_over_a_character_device() -> None:
    """--device opens the path once, O_RDWR; a raw pty stands in for the virtio port."""
    every_byte = bytes(range(256)) * 2000

    async def main() -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        argv = [PYTHON, "-I", "-S", "-u", str(AGENT), "--device", f"/proc/self/fd/{slave}"]
        proc = subprocess.Popen([*argv, "--no-poweroff"], pass_fds=[slave])
        os.close(slave)
        try:
            async with await pty_channel(master) as chan:
                assert (await chan.wait_hello(10)).pid == proc.pid
                echoed = await chan.exec(["cat"], stdin=every_byte)
                assert (echoed.exit_code, echoed.stdout) == (0, every_byte)
                await chan.shutdown(5)
            assert await asyncio.to_thread(stop, proc) == 0
        finally:
            kill_quietly(proc.pid)

    run(main)


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--bogus"], 2, b"unknown argument '--bogus'"),
        (["--device"], 2, b"--device needs a value"),
        (["--device", "/nonexistent/port"], 1, b"cannot open the channel"),
        (["--connect", "tcp:127.0.0.1:1"], 1, b"unsupported --connect address"),
    ],
)
def test_agent_command_line_errors(args: list[str], status: int, message: bytes) -> None:
    done = subprocess.run([PYTHON, "-I", "-S", str(AGENT), *args], capture_output=True, timeout=20)
    assert done.returncode == status
    assert message in done.stderr
