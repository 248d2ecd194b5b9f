"""Webhook intake, as GitHub sees it: signed deliveries sent to a real ``vmrunner serve``
(the delivery committed to the store before the 202; the scheduler planning kept
deliveries meanwhile in serve's background process, as in production) against a bare FastAPI
endpoint on uvicorn that answers 202 without storing, in the same run. Whole HTTP round
trips from a client process on 127.0.0.1; prints deliveries/s and p50/p99 ack latency.
The pushes name a repository that is not there (``github_git_url`` is a ``file://``
path): nothing leaves the machine.

    .venv/bin/python bench/webhook_bench.py [--n 2000] [--clients 8] [--postgres | --database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from vmrunner.github.webhook import sign

SECRET = b"bench-secret"
BARE = """
import sys, uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
app = FastAPI()
@app.post("/webhook")
async def hook(request: Request):
    await request.body()
    return JSONResponse({"status": "received"}, status_code=202)
@app.get("/healthz")
async def ok():
    return {"status": "ok"}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(argv: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{argv} never answered")


async def _send(port: int, n: int, clients: int, tag: str) -> tuple[float, list[float]]:
    body = json.dumps({"ref": "refs/heads/main", "repository": {"full_name": "o/r"},
                       "commits": [{"message": "x" * 200}] * 5}).encode()  # fmt: skip
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(SECRET, body)}
    latencies: list[float] = []
    queue = list(range(n))

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            t0 = time.perf_counter()
            r = await http.post("/webhook", content=body,
                                headers={**headers, "X-GitHub-Delivery": f"{tag}-{i}"})  # fmt: skip
            latencies.append(time.perf_counter() - t0)
            assert r.status_code == 202, r.text

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return time.perf_counter() - t0, latencies


def _line(name: str, took: float, lat: list[float]) -> float:
    lat.sort()
    rate = len(lat) / took
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"{name:<34} {rate:8.0f} deliveries/s   p50 {statistics.median(lat) * 1000:6.1f} ms"
          f"   p99 {p99 * 1000:6.1f} ms")  # fmt: skip
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--database-url", default="")
    ap.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL cluster")
    args = ap.parse_args()
    cluster = None
    if args.postgres:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from conftest import PgCluster

        cluster = PgCluster()
        args.database_url = cluster.url
    try:
        _run(args)
    finally:
        if cluster is not None:
            cluster.remove()


def _run(args: argparse.Namespace) -> None:
    state = Path(tempfile.mkdtemp(prefix="vmrunner-bench-"))
    env = {**os.environ, "VMRUNNER_HOME": str(state), "VMRUNNER_WEBHOOK_SECRET": SECRET.decode(),
           "VMRUNNER_GITHUB_GIT_URL": f"file://{state}/no-git/{{owner}}/{{repo}}.git"}  # fmt: skip
    if args.database_url:
        env["VMRUNNER_DATABASE_URL"] = args.database_url
    backend = "PostgreSQL" if args.database_url else "SQLite"
    ours, bare = _port(), _port()
    procs = [
        _start(
            [sys.executable, "-m", "vmrunner", "serve", "--port", str(ours), "--workers", "0"],
            env,
            ours,
        ),
        _start([sys.executable, "-c", BARE, str(bare)], env, bare),
    ]
    try:
        asyncio.run(_send(ours, 100, args.clients, "warm"))
        asyncio.run(_send(bare, 100, args.clients, "warm"))
        print(
            f"{args.n} signed deliveries, {args.clients} concurrent clients; serve = its HTTP process + its background process"
        )
        r_bare = _line(
            "bare FastAPI (no store)", *asyncio.run(_send(bare, args.n, args.clients, "b"))
        )
        r_ours = _line(f"vmrunner serve ({backend}, durable)",
                       *asyncio.run(_send(ours, args.n, args.clients, "o")))  # fmt: skip
        print(f"ratio: vmrunner / bare = {r_ours / r_bare:.2f} (goal >= 0.5)")
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=30)


if __name__ == "__main__":
    main()
