"""The HTTP API under load, against a real ``vmrunner serve --workers 0`` on 127.0.0.1.

1. ``GET /api/v1/runs`` with 100,000 runs kept (each with a ~1.5 KB result document):
   p50/p99 of whole round trips, sequential, for the first page, a deep page (``before``)
   and filtered pages (status, repo) -- on SQLite and on PostgreSQL (a throwaway cluster).
   Goal: p99 <= 50 ms.
2. 50 server-sent-event followers of one running run while lines are appended to its
   live log: whether each follower saw every line exactly once, in order, and the server
   process's CPU (user+sys seconds / wall seconds). Goal: every line, under one core.

    .venv/bin/python bench/api_bench.py [--runs 100000] [--requests 400] [--followers 50]
                                        [--lines 400] [--skip-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert

from vmrunner.config import load_settings
from vmrunner.results import ExecDocument
from vmrunner.services.core import Services
from vmrunner.services.tokens import create_token
from vmrunner.store.models import runs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from api.live import free_port, sse_events


def _fill(services: Services, count: int) -> None:
    """``count`` finished exec runs, inserted in batches (as the store keeps them)."""
    now = time.time() - count
    statuses = ("success", "failure", "success", "cancelled", "success")
    batch: list[dict[str, Any]] = []
    for n in range(count):
        status = statuses[n % len(statuses)]
        argv = ("make", f"target-{n % 97}", "--jobs=4", "V=1")
        doc = ExecDocument(str(n + 1), status, now + n, now + n + 3.5, argv, "debian", accel="tcg",
                           host="bench", exit_code=0, exit_status=0,
                           output_tail="compiling module\n" * 80).to_dict()  # fmt: skip
        batch.append({"kind": "exec", "status": status, "title": " ".join(argv),
                      "created_at": now + n, "started_at": now + n, "finished_at": now + n + 3.5,
                      "host": "bench", "repo": f"org/repo-{n % 50}", "branch": "main",
                      "request": json.dumps({"argv": list(argv)}), "document": json.dumps(doc),
                      "cancel_requested": False})  # fmt: skip
        if len(batch) == 5000 or n == count - 1:
            rows = batch
            services.store.write(lambda c, rows=rows: c.execute(insert(runs), rows))
            batch = []


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [
            sys.executable,
            "-m",
            "vmrunner",
            "serve",
            "--port",
            str(self.port),
            "--workers",
            "0",
        ]
        self.proc = subprocess.Popen(argv, env=env, start_new_session=True)
        for _ in range(600):
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit("the server did not start")

    def stop(self) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=60)


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms"


def bench_list(backend: str, env: dict[str, str], count: int, requests: int) -> None:
    with Services(load_settings(env=env)) as services:
        t0 = time.perf_counter()
        _fill(services, count)
        filled = time.perf_counter() - t0
        token = create_token(services, "bench", "read")[1]
    print(f"{backend}: {count} runs kept in {filled:.1f} s")
    server = Server(env)
    try:
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as c:
            for label, query in (("first page (50)", "limit=50"),
                                 ("deep page (before=count/2)", f"limit=50&before={count // 2}"),
                                 ("status=failure", "status=failure&limit=50"),
                                 ("repo=org/repo-7", "repo=org/repo-7&limit=50")):  # fmt: skip
                c.get(f"/api/v1/runs?{query}").raise_for_status()  # warm
                took = []
                for _ in range(requests):
                    start = time.perf_counter()
                    r = c.get(f"/api/v1/runs?{query}")
                    took.append(time.perf_counter() - start)
                    assert r.status_code == 200 and len(r.json()["runs"]) == 50
                print(f"  GET /api/v1/runs {label:28s} {_percentiles(took)}  ({requests} requests)")
    finally:
        server.stop()


async def _follow(url: str, token: str, run_id: str) -> list[str]:
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=url, headers=headers, timeout=600) as c,
        c.stream("GET", f"/api/v1/runs/{run_id}/logs") as r,
    ):
        return [e.get("id", "end") async for e in _aevents(r)]


async def _aevents(response: httpx.Response) -> Any:
    lines = [line async for line in response.aiter_lines()]
    fake = httpx.Response(200, content="\n".join(lines).encode() + b"\n\n")
    for event in sse_events(fake):
        yield event


def bench_followers(env: dict[str, str], followers: int, lines: int) -> None:
    services = Services(load_settings(env=env))
    token = create_token(services, "followers", "read")[1]
    handle = services.accept("exec", {"argv": ["bench"]}, title="bench")
    services.runs.start(handle.id)
    server = Server(env)
    try:
        cpu0, t0 = _cpu_s(server.proc.pid), time.perf_counter()

        def write() -> None:
            time.sleep(1.0)  # let the followers connect
            with handle.output_log.open("a") as f:
                for n in range(1, lines + 1):
                    f.write(f"line {n} " + "x" * 60 + "\n")
                    f.flush()
                    time.sleep(0.01)
            doc = ExecDocument(handle.id, "success", time.time() - 5, time.time(), ("bench",),
                               "debian", accel="tcg", exit_code=0, exit_status=0).to_dict()  # fmt: skip
            services.runs.finish(handle.id, "success", doc)

        writer = threading.Thread(target=write)
        writer.start()

        async def everyone() -> list[list[str]]:
            return await asyncio.gather(
                *(_follow(server.url, token, handle.id) for _ in range(followers))
            )

        seen = asyncio.run(everyone())
        writer.join()
        wall, cpu = time.perf_counter() - t0, _cpu_s(server.proc.pid) - cpu0
    finally:
        server.stop()
        services.close()
    want = [str(n) for n in range(1, lines + 1)] + ["end"]
    complete = sum(1 for s in seen if s == want)
    print(f"SSE: {followers} followers x {lines} lines: {complete}/{followers} saw every line once, "
          f"in order; server CPU {cpu:.2f} s over {wall:.1f} s wall = {cpu / wall:.2f} cores")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--followers", type=int, default=50)
    ap.add_argument("--lines", type=int, default=400)
    ap.add_argument("--skip-postgres", action="store_true")
    args = ap.parse_args()
    state = Path(tempfile.mkdtemp(prefix="vmrunner-api-bench-"))
    base = {**os.environ, "VMRUNNER_WEBHOOK_SECRET": "bench"}
    bench_list("SQLite", {**base, "VMRUNNER_HOME": str(state / "sqlite")}, args.runs, args.requests)
    if not args.skip_postgres:
        from conftest import PgCluster

        cluster = PgCluster()
        try:
            env = {**base, "VMRUNNER_HOME": str(state / "pg"), "VMRUNNER_DATABASE_URL": cluster.url}
            bench_list("PostgreSQL", env, args.runs, args.requests)
        finally:
            cluster.remove()
    bench_followers({**base, "VMRUNNER_HOME": str(state / "sse")}, args.followers, args.lines)


if __name__ == "__main__":
    main()
