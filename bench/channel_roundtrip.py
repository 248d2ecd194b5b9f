"""Round-trip latency of ``true`` through the guest channel, with the agent on this host.

Starts the real agent (``--connect unix:...``) under the given Python, then prints
median and p95 of: ping, the host-side round trip of ``exec(["true"])``, the
agent-reported ``duration_s`` (spawn to reap in the "guest") and their difference
(what the channel adds). Prints figures only; asserts nothing.

Usage: .venv/bin/python bench/channel_roundtrip.py [-n 100] [--python /usr/bin/python3]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import vmrunner.guest.agent
from vmrunner.guest.channel import GuestChannel, accept_channel


def _row(name: str, seconds: list[float]) -> str:
    median = statistics.median(seconds) * 1000
    p95 = statistics.quantiles(seconds, n=20)[18] * 1000
    return f"{name:<34} median {median:7.3f} ms   p95 {p95:7.3f} ms"


async def _measure(chan: GuestChannel, n: int) -> list[str]:
    pings = [await chan.ping(5) for _ in range(n)]
    for _ in range(5):  # warm up
        await chan.exec(["true"], timeout=10)
    trips, spawns = [], []
    for _ in range(n):
        start = time.monotonic()
        result = await chan.exec(["true"], timeout=10)
        trips.append(time.monotonic() - start)
        spawns.append(result.duration_s)
    return [
        _row("ping round trip", pings),
        _row("exec true: host round trip", trips),
        _row("exec true: agent duration_s", spawns),
        _row("exec true: channel overhead", [t - s for t, s in zip(trips, spawns, strict=True)]),
    ]


async def _bench(n: int, python: str) -> None:
    agent = Path(vmrunner.guest.agent.__file__)
    with tempfile.TemporaryDirectory(prefix="vmr-bench-") as tmp:
        path = str(Path(tmp) / "agent.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(path)
            listener.listen(1)
            argv = [python, "-I", "-S", "-u", str(agent), "--connect", f"unix:{path}"]
            start = time.monotonic()
            proc = subprocess.Popen([*argv, "--no-poweroff"])
            try:
                async with await accept_channel(listener, 10) as chan:
                    hello = await chan.wait_hello(10)
                    print(f"agent {hello.agent_version} under {python}, pid {hello.pid}")
                    print(f"{'start to hello':<34} {1000 * (time.monotonic() - start):7.1f} ms")
                    for line in await _measure(chan, n):
                        print(line)
            finally:
                proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100, help="execs to time (default 100)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the agent")
    args = parser.parse_args()
    asyncio.run(_bench(args.n, args.python))


if __name__ == "__main__":
    main()
