"""Following a real exec run (a command in a real VM that prints lines with pauses) over
server-sent events: lines arrive while the run runs, a reconnect with ``Last-Event-ID``
resumes without a gap or a repeat, and the stream ends when the run ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from api.live import ApiServer, sse_events

pytestmark = [pytest.mark.vm, pytest.mark.slow]
SCRIPT = "for i in 1 2 3 4 5 6 7 8; do echo line $i; sleep 1; done; printf tail"


@pytest.fixture
def srv(tmp_path: Path, debian_image: Path) -> Iterator[ApiServer]:
    server = ApiServer(tmp_path / "state")
    try:
        yield server
    finally:
        server.stop()


def _events(
    srv: ApiServer, run_id: str, last: str | None, stop_after: int | None
) -> list[dict[str, str]]:
    headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last} if last else {})}
    got: list[dict[str, str]] = []
    with srv.client(srv.read) as c, c.stream("GET", f"/api/v1/runs/{run_id}/logs",
                                             headers=headers, timeout=600) as r:  # fmt: skip
        assert r.status_code == 200
        for event in sse_events(r):
            got.append(event)
            if stop_after is not None and len(got) == stop_after:
                break
    return got


def test_following_a_live_exec_run_with_a_reconnect(srv: ApiServer) -> None:
    with srv.client(srv.write) as c:
        r = c.post("/api/v1/runs", json={"kind": "exec", "argv": ["sh", "-c", SCRIPT]})
        assert r.status_code == 202, r.text
        run_id = r.json()["id"]
        first = _events(srv, run_id, None, stop_after=2)
        assert c.get(f"/api/v1/runs/{run_id}").json()["run"]["status"] == "running"
        rest = _events(srv, run_id, first[-1]["id"], stop_after=None)
        final = c.get(f"/api/v1/runs/{run_id}").json()
    lines = [e for e in first + rest if e.get("event") == "line"]
    assert [e["data"] for e in lines] == [*(f"line {n}" for n in range(1, 9)), "tail"]
    assert [int(e["id"]) for e in lines] == list(range(1, 10))
    assert rest[-1]["event"] == "end"
    assert final["run"]["status"] == "success" and final["document"]["exit_code"] == 0
