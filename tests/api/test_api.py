"""``/api/v1`` against a real ``vmrunner serve`` (uvicorn on 127.0.0.1), on SQLite and on
PostgreSQL: every route with no token, a read token and a write token; pagination and
filters; result documents against the one result schema; plain and followed (SSE) logs
with resumption; bad input (404, 422 naming the field or the file and line, 413);
workflows queued from a repository; readiness and metrics."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from api.live import SECRET, ApiServer, sse_events
from gitsource import Source
from vmrunner.github.webhook import sign
from vmrunner.results import validate_result
from vmrunner.store.workers import Workers

CI = """name: ci
on: [push]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: echo hello
"""
BROKEN = """name: broken
on: [push]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - run: echo hello
        bogus_key: 1
"""


def _bare_repo(home: Path, owner: str, name: str, files: dict[str, str]) -> None:
    """A bare repository at the server's github_git_url for ``owner/name``, ``main`` one commit."""
    Source(home / "git", f"{owner}/{name}").commit(dict(files))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    home = tmp_path_factory.mktemp("api")
    if request.param == "sqlite":
        server = ApiServer(home)
    else:
        pg = request.getfixturevalue("pg_url")
        schema = f"t_{uuid.uuid4().hex[:10]}"
        admin = create_engine(pg.replace("postgresql://", "postgresql+psycopg://", 1))
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        server = ApiServer(home, f"{pg}?options=-csearch_path%3D{schema}")
    _bare_repo(home, "acme", "app", {".github/workflows/ci.yml": CI})
    _bare_repo(home, "acme", "broken", {".github/workflows/broken.yml": BROKEN})
    try:
        yield server
    finally:
        server.stop()
        if request.param == "postgresql":
            with admin.begin() as conn:
                conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()


def _error(r: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert "Traceback" not in r.text
    body = r.json()["error"]
    assert body["kind"] == kind and body["message"], body
    return dict(body)


# ---- authentication ------------------------------------------------------------------------

GETS = ["/api/v1/runs", "/api/v1/runs/{id}", "/api/v1/runs/{id}/logs", "/api/v1/queue",
        "/api/v1/hosts", "/api/v1/learning/stats", "/api/v1/learning/predict?command=make",
        "/api/v1/learning/related?command=make", "/api/v1/learning/lessons",
        "/api/v1/runs/{id}/explain"]  # fmt: skip
POSTS = ["/api/v1/runs/{id}/cancel"]


def test_every_get_needs_a_read_token(srv: ApiServer) -> None:
    run_id = srv.keep_exec(["true"])
    with srv.client(None) as anon, srv.client("vmr_wrong") as wrong, srv.client(srv.read) as rd, \
            srv.client(srv.write) as wr:  # fmt: skip
        for path in (p.replace("{id}", run_id) for p in GETS):
            _error(anon.get(path), 401, "unauthorized")
            _error(wrong.get(path), 401, "unauthorized")
            assert rd.get(path).status_code == 200, path
            assert wr.get(path).status_code == 200, path  # write implies read


def test_posts_need_a_write_token(srv: ApiServer) -> None:
    run_id = srv.keep_exec(["true"])
    body = {"kind": "exec", "argv": ["true"]}
    with srv.client(None) as anon, srv.client(srv.read) as rd, srv.client(srv.write) as wr:
        for path in [*(p.replace("{id}", run_id) for p in POSTS), "/api/v1/runs"]:
            _error(anon.post(path, json=body), 401, "unauthorized")
            _error(rd.post(path, json=body), 403, "forbidden")
        r = wr.post(f"/api/v1/runs/{run_id}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "success"  # finished: unchanged


def test_a_revoked_token_is_refused_at_once(srv: ApiServer) -> None:
    from vmrunner.services.tokens import create_token, revoke_token

    info, secret = create_token(srv.services, f"short-{uuid.uuid4().hex[:6]}", "read")
    with srv.client(secret) as c:
        assert c.get("/api/v1/runs").status_code == 200
        revoke_token(srv.services, info.id)
        _error(c.get("/api/v1/runs"), 401, "unauthorized")


def test_open_routes_need_no_token(srv: ApiServer) -> None:
    with srv.client(None) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert ready.json()["revision"] == ready.json()["head"] == "0005"
        assert c.get("/openapi.json").json()["paths"]["/api/v1/runs"]
        assert "swagger" in c.get("/docs").text.lower()
        assert c.get("/metrics").status_code == 200


# ---- listing, pagination, filters ----------------------------------------------------------


def test_pagination_walks_every_run_once_newest_first(srv: ApiServer) -> None:
    tag = uuid.uuid4().hex[:8]
    ids = [srv.keep_exec(["echo", str(n)], repo=f"p/{tag}") for n in range(23)]
    seen: list[str] = []
    with srv.client(srv.read) as c:
        url: str | None = f"/api/v1/runs?repo=p/{tag}&limit=5"
        while url is not None:
            page = c.get(url).json()
            assert len(page["runs"]) <= 5
            seen += [r["id"] for r in page["runs"]]
            url = page["next"]
    assert seen == sorted(ids, key=int, reverse=True)


@pytest.mark.parametrize(
    ("param", "value", "expect"),
    [("kind", "exec", "ab"), ("kind", "systest", ""), ("status", "failure", "b"), ("repo", "f/one", "a"),
     ("branch", "feature", "b"), ("host", None, "ab")],
)  # fmt: skip
def test_filters(srv: ApiServer, param: str, value: str | None, expect: str) -> None:
    tag = uuid.uuid4().hex[:8]
    a = srv.keep_exec(["a", tag], "success", repo="f/one", branch="main")
    b = srv.keep_exec(["b", tag], "failure", repo="f/two", branch="feature")
    wanted = {"a": a, "b": b}
    if value is None:  # host: the test process's host, as both were kept here
        value = srv.services.get(a).host
    with srv.client(srv.read) as c:
        found = [
            r["id"]
            for r in c.get("/api/v1/runs", params={param: value, "limit": 1000}).json()["runs"]
        ]
    for key, run_id in wanted.items():
        assert (run_id in found) == (key in expect), (param, key)


def test_bad_filters_are_422_naming_the_parameter(srv: ApiServer) -> None:
    with srv.client(srv.read) as c:
        for query, field in (("kind=nope", "kind"), ("limit=0", "limit"), ("limit=5000", "limit"),
                             ("before=abc", "before"), ("status=done", "status")):  # fmt: skip
            body = _error(c.get(f"/api/v1/runs?{query}"), 422, "invalid")
            assert any(field in f for f in body["fields"]), body


# ---- one run, documents, logs ----------------------------------------------------------------


def test_a_finished_run_serves_its_valid_document(srv: ApiServer) -> None:
    run_id = srv.keep_exec(["make", "test"], "failure")
    with srv.client(srv.read) as c:
        got = c.get(f"/api/v1/runs/{run_id}").json()
    assert got["run"]["status"] == "failure" and got["run"]["id"] == run_id
    assert validate_result(got["document"]) == []
    assert got["document"]["argv"] == ["make", "test"] and got["logs"] == ["output"]


def test_an_active_run_serves_its_record(srv: ApiServer) -> None:
    handle = srv.keep_running(["sleep", "1"])
    with srv.client(srv.read) as c:
        got = c.get(f"/api/v1/runs/{handle.id}").json()
    srv.finish(handle.id)
    assert got["run"]["status"] == "running" and got["document"] is None
    assert got["request"] == {"argv": ["sleep", "1"]}


def test_unknown_runs_are_404(srv: ApiServer) -> None:
    with srv.client(srv.write) as c:
        for r in (c.get("/api/v1/runs/999999"), c.get("/api/v1/runs/not-a-number"),
                  c.get("/api/v1/runs/%C2%B9"), c.post("/api/v1/runs/%C2%B9/cancel"),  # "¹": a digit, not ASCII
                  c.get("/api/v1/runs/999999/logs"), c.get("/api/v1/runs/999999/explain"),
                  c.post("/api/v1/runs/999999/cancel"), c.post("/api/v1/runs/999999/rerun"),
                  c.get("/api/v1/runs/999999/logs", headers={"Accept": "text/event-stream"})):  # fmt: skip
            _error(r, 404, "not_found")


def test_plain_logs_and_a_job_that_matches_nothing(srv: ApiServer) -> None:
    run_id = srv.keep_exec(["seq"], lines=4)
    with srv.client(srv.read) as c:
        r = c.get(f"/api/v1/runs/{run_id}/logs")
        assert r.status_code == 200 and r.text == "line 1\nline 2\nline 3\nline 4\n"
        assert r.headers["content-type"].startswith("text/plain")
        _error(c.get(f"/api/v1/runs/{run_id}/logs?job=build"), 404, "not_found")


def _follow(srv: ApiServer, run_id: str, last: str | None = None, stop_after: int | None = None
            ) -> list[dict[str, str]]:  # fmt: skip
    headers = {"Accept": "text/event-stream", **({"Last-Event-ID": last} if last else {})}
    got: list[dict[str, str]] = []
    with srv.client(srv.read) as c, c.stream("GET", f"/api/v1/runs/{run_id}/logs",
                                             headers=headers) as r:  # fmt: skip
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for event in sse_events(r):
            got.append(event)
            if stop_after is not None and len(got) == stop_after:
                break
    return got


def test_sse_of_a_finished_run_and_resuming_from_an_id(srv: ApiServer) -> None:
    run_id = srv.keep_exec(["seq"], lines=6)
    events = _follow(srv, run_id)
    assert [(e["id"], e["data"]) for e in events[:-1]] == [
        (str(n), f"line {n}") for n in range(1, 7)
    ]
    assert events[-1]["event"] == "end"
    resumed = _follow(srv, run_id, last="4")
    assert [e.get("id") for e in resumed] == ["5", "6", None]


def test_sse_follows_a_running_run_until_it_ends(srv: ApiServer) -> None:
    """Lines written while the client listens arrive; a reconnect resumes exactly after the
    last id seen; the stream ends when the run is final (a half-written line included)."""
    handle = srv.keep_running(["writer"])
    log = handle.output_log
    first_seen = threading.Event()

    def write() -> None:
        with log.open("a") as f:
            f.write("line 1\n")
            f.flush()
            first_seen.wait(60)
            for n in range(2, 9):
                f.write(f"line {n}\n")
                f.flush()
                time.sleep(0.05)
            f.write("no newline")
        srv.finish(handle.id)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        head = _follow(srv, handle.id, stop_after=1)
        assert head[0]["data"] == "line 1"
        assert srv.services.get(handle.id).status == "running"  # it arrived while running
        first_seen.set()
        head += _follow(srv, handle.id, last="1", stop_after=2)
        rest = _follow(srv, handle.id, last=head[-1]["id"])
    finally:
        first_seen.set()
        writer.join()
    lines = [e for e in head + rest if e.get("event") == "line"]
    assert [int(e["id"]) for e in lines] == list(range(1, 10))
    assert [e["data"] for e in lines] == [*(f"line {n}" for n in range(1, 9)), "no newline"]
    assert rest[-1]["event"] == "end"


# ---- submitting ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [({"kind": "exec"}, "argv"), ({"kind": "exec", "argv": []}, "argv"),
     ({"kind": "exec", "argv": ["x"], "cpus": 0}, "cpus"), ({"kind": "nope"}, "kind"),
     ({"kind": "exec", "argv": ["x"], "surprise": 1}, "surprise"), ({}, "kind"),
     ({"kind": "workflow", "repo": "no-slash"}, "repo"), ({"kind": "exec", "argv": "ls"}, "argv")],
)  # fmt: skip
def test_malformed_bodies_are_422_naming_the_field(
    srv: ApiServer, body: dict[str, Any], field: str
) -> None:
    with srv.client(srv.write) as c:
        found = _error(c.post("/api/v1/runs", json=body), 422, "invalid")
    assert any(field in f for f in found["fields"]), found


def test_not_json_is_422_and_too_big_is_413(srv: ApiServer) -> None:
    with srv.client(srv.write) as c:
        _error(c.post("/api/v1/runs", content=b"{oops", headers={"Content-Type": "application/json"}),
               422, "invalid")  # fmt: skip
        big = json.dumps({"kind": "exec", "argv": ["x" * (3 * 1024 * 1024)]}).encode()
        found = _error(c.post("/api/v1/runs", content=big, headers={"Content-Type": "application/json"}),
                       413, "too_large")  # fmt: skip
        assert "over" in found["message"]


def test_an_invalid_recipe_is_422_with_file_and_line(srv: ApiServer) -> None:
    recipe = "name: web\nchecks:\n  - command: 'true'\n  - nonsense_check: 1\n"
    with srv.client(srv.write) as c:
        found = _error(c.post("/api/v1/runs", json={"kind": "systest", "recipe": recipe,
                                                    "recipe_name": "web.yml"}), 422, "invalid")  # fmt: skip
        assert found["file"] == "web.yml" and found["line"] == 4, found
        bad_yaml = _error(c.post("/api/v1/runs", json={"kind": "systest", "recipe": "a: [1,\n"}),
                          422, "invalid")  # fmt: skip
        assert bad_yaml["file"] == "recipe.yml" and bad_yaml["line"] >= 1
        _error(c.post("/api/v1/runs", json={"kind": "systest"}), 422, "invalid")


def test_a_refused_exec_keeps_nothing(srv: ApiServer) -> None:
    with srv.client(srv.write) as c:
        before = c.get("/api/v1/runs?limit=1").json()["runs"]
        for bad in ({"memory_mib": 100}, {"image": "../etc"}, {"timeout": -1}):
            found = _error(c.post("/api/v1/runs", json={"kind": "exec", "argv": ["true"], **bad}),
                           422, "invalid")  # fmt: skip
            assert found["fields"] == [f"exec.{next(iter(bad))}"], found
        assert c.get("/api/v1/runs?limit=1").json()["runs"] == before


def test_a_workflow_is_queued_shown_cancelled_and_rerun(srv: ApiServer) -> None:
    with srv.client(srv.write) as c:
        r = c.post("/api/v1/runs", json={"kind": "workflow", "repo": "acme/app", "ref": "main"})
        assert r.status_code == 202, r.text
        run_id = r.json()["id"]
        assert c.get(f"/api/v1/runs/{run_id}").json()["run"]["status"] == "queued"
        queue = c.get("/api/v1/queue").json()
        pending = [e["run_id"] for g in queue["groups"] for e in g["pending"]]
        assert run_id in pending and queue["depth"]["pending"] >= 1
        group = next(
            g["group"] for g in queue["groups"] if any(e["run_id"] == run_id for e in g["pending"])
        )
        assert group.casefold() == "acme/app:acme/app/main/.github/workflows/ci.yml"
        again = c.post(f"/api/v1/runs/{run_id}/rerun")  # a newer run of the group supersedes it
        assert again.status_code == 202, again.text
        new_id = again.json()["id"]
        assert c.get(f"/api/v1/runs/{run_id}").json()["run"]["status"] == "cancelled"
        cancelled = c.post(f"/api/v1/runs/{new_id}/cancel").json()
        assert cancelled["status"] == "cancelled"
        doc = c.get(f"/api/v1/runs/{new_id}").json()["document"]
        assert validate_result(doc) == [] and doc["errors"][0]["kind"] == "cancelled"


def test_workflow_input_errors(srv: ApiServer) -> None:
    with srv.client(srv.write) as c:
        found = _error(c.post("/api/v1/runs", json={"kind": "workflow", "repo": "acme/broken"}),
                       422, "invalid")  # fmt: skip
        assert found["file"] == ".github/workflows/broken.yml" and found["line"], found
        _error(
            c.post("/api/v1/runs", json={"kind": "workflow", "repo": "acme/none"}), 422, "invalid"
        )
        _error(c.post("/api/v1/runs", json={"kind": "workflow", "repo": "acme/app", "ref": "nope"}),
               422, "invalid")  # fmt: skip
        _error(c.post("/api/v1/runs", json={"kind": "workflow", "repo": "acme/app",
                                            "event": "workflow_dispatch"}), 422, "invalid")  # fmt: skip


# ---- queue, hosts, learning, metrics ---------------------------------------------------------


def test_hosts_lists_registered_workers(srv: ApiServer) -> None:
    wid = f"api-host-{uuid.uuid4().hex[:6]}:1:1"
    Workers(srv.services.store).register(wid, "api-host", 3)
    with srv.client(srv.read) as c:
        found = {w["id"]: w for w in c.get("/api/v1/hosts").json()["workers"]}
    Workers(srv.services.store).remove(wid)
    assert found[wid]["capacity"] == 3 and found[wid]["host"] == "api-host"
    assert found[wid]["heartbeat_age_s"] >= 0


def test_learning_answers(srv: ApiServer) -> None:
    with srv.client(srv.read) as c:
        assert "totals" in c.get("/api/v1/learning/stats?top=3").json()
        p = c.get("/api/v1/learning/predict", params={"command": "make test"}).json()
        assert p["command"] == "make test" and 0 <= p["probability"] <= 1
        assert (
            c.get("/api/v1/learning/related", params={"command": "make"}).json()["command"]
            == "make"
        )
        assert "lessons" in c.get("/api/v1/learning/lessons").json()
        _error(c.get("/api/v1/learning/predict"), 422, "invalid")
        run_id = srv.keep_exec(["false"], "failure")
        assert c.get(f"/api/v1/runs/{run_id}/explain").json()["run_id"] == run_id


def test_metrics_count_runs_and_webhooks(srv: ApiServer) -> None:
    body = json.dumps({"zen": "hi", "hook_id": 1}).encode()
    headers = {"X-GitHub-Event": "ping", "X-GitHub-Delivery": uuid.uuid4().hex,
               "X-Hub-Signature-256": sign(SECRET.encode(), body)}  # fmt: skip
    assert httpx.post(f"{srv.url}/webhook", content=body, headers=headers).status_code == 200
    assert httpx.post(f"{srv.url}/webhook", content=body, headers={}).status_code == 401
    srv.keep_exec(["metric"], "success")
    time.sleep(5.1)  # the store's figures are cached for 5 s
    text = httpx.get(f"{srv.url}/metrics").text
    families = {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")
    }
    assert {"vmrunner_runs", "vmrunner_queue_depth", "vmrunner_run_duration_seconds_bucket",
            "vmrunner_webhook_deliveries_total", "vmrunner_webhook_seconds_bucket",
            "vmrunner_vm_runs_by_accel"} <= families  # fmt: skip
    assert 'vmrunner_webhook_deliveries_total{status="200"} 1.0' in text
    assert 'vmrunner_webhook_deliveries_total{status="401"} 1.0' in text
    success = [
        ln
        for ln in text.splitlines()
        if ln.startswith('vmrunner_runs{kind="exec",status="success"}')
    ]
    assert success and float(success[0].split()[-1]) >= 1
    tcg = [
        ln for ln in text.splitlines() if ln.startswith('vmrunner_vm_runs_by_accel{accel="tcg"}')
    ]
    assert tcg and float(tcg[0].split()[-1]) >= 1
