"""A 60-second burst of signed deliveries at a bounded rate against one real ``vmrunner
serve`` on PostgreSQL: every delivery acknowledged is kept and planned, each becomes
exactly one queued run, and the copies GitHub may send again change nothing."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from conftest import PgCluster
from github.fake import FakeGitHub
from server.origin import Origin, wait_for
from server.test_serve_vm import SECRET, Deployment
from vmrunner.github.webhook import sign

pytestmark = [pytest.mark.slow]

WORKFLOW = """
name: ci
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: echo hi
"""
RATE = 5  # deliveries per second
SECONDS = 60


async def _burst(port: int, origin: Origin, sha: str, secret: bytes) -> list[tuple[str, int]]:
    """Send RATE deliveries a second for SECONDS (each a push to its own branch; every
    tenth one sent twice, as a redelivery); the (delivery, status) of every answer."""
    answers: list[tuple[str, int]] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:

        async def send(i: int, copy: int) -> None:
            body = json.dumps(origin.push(sha, branch=f"b{i}")).encode()
            r = await http.post("/webhook", content=body, headers={
                "X-GitHub-Event": "push", "X-GitHub-Delivery": f"burst-{i}",
                "X-Hub-Signature-256": sign(secret, body)})  # fmt: skip
            answers.append((f"burst-{i}", r.status_code))

        start = time.monotonic()
        tasks = []
        for i in range(RATE * SECONDS):
            await asyncio.sleep(max(0.0, start + i / RATE - time.monotonic()))
            tasks.append(asyncio.ensure_future(send(i, 0)))
            if i % 10 == 5:
                tasks.append(asyncio.ensure_future(send(i - 5, 1)))
        await asyncio.gather(*tasks)
    return answers


def test_a_burst_of_deliveries_loses_none_and_queues_none_twice(
    tmp_path: Path, pg_cluster: PgCluster, github_fake: FakeGitHub
) -> None:
    origin = Origin(tmp_path / "github", "octo/demo")
    sha = origin.commit({".github/workflows/ci.yml": WORKFLOW})
    d = Deployment(tmp_path, pg_cluster.url, origin, github_fake)
    try:
        d.serve()  # no worker: the runs stay queued, each counted once
        answers = asyncio.run(_burst(d.port, origin, sha, SECRET.encode()))
        firsts = {k for k, status in answers if status == 202}
        assert len(firsts) == RATE * SECONDS and all(s in (200, 202) for _, s in answers)
        n = RATE * SECONDS

        def planned() -> bool:
            [(count,)] = d.rows("SELECT count(*) FROM deliveries WHERE status = 'processed'")
            return bool(count == n)

        wait_for("every delivery planned", planned, 300)
        [(deliveries, copies)] = d.rows("SELECT count(*), sum(copies) FROM deliveries")
        assert (deliveries, copies) == (n, n + n // 10)
        per_delivery = d.rows("SELECT delivery_id, count(*) FROM queue GROUP BY delivery_id")
        assert len(per_delivery) == n and {c for _, c in per_delivery} == {1}
        [(runs,)] = d.rows("SELECT count(*) FROM runs WHERE status = 'queued'")
        assert runs == n
    finally:
        d.stop()
