"""The GitHub runner service as it is deployed: a real ``vmrunner serve`` (uvicorn on
127.0.0.1) and ``vmrunner worker`` processes on a real PostgreSQL server, jobs in real
VMs (TCG), repositories fetched from local bare repositories through
``github_git_url``, reports sent to a fake GitHub that checks every request against
GitHub's OpenAPI description. Deliveries are GitHub's example payloads, signed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from conftest import PgCluster
from github.conftest import APP_ID, TOKEN, AppKey
from github.fake import FakeGitHub
from server.origin import FAIL, PASS, Origin, wait_for
from vmrunner.github.webhook import sign

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("debian_image")]

SECRET = "serve-vm-secret"
SLOW = """
name: slow
on: push
jobs:
  wait:
    runs-on: ubuntu-latest
    steps:
      - run: echo started-slow-step; sleep 25; echo slept
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Deployment:
    """``serve`` and workers over one database, each process in its own group."""

    def __init__(self, tmp: Path, db: str, origin: Origin, fake: FakeGitHub) -> None:
        self.port, self.origin, self.fake, self.db = _port(), origin, fake, db
        self.env = {**os.environ, "VMRUNNER_HOME": str(tmp / "state"),
                    "VMRUNNER_DATABASE_URL": db, "VMRUNNER_WEBHOOK_SECRET": SECRET,
                    "VMRUNNER_GITHUB_TOKEN": TOKEN, "VMRUNNER_GITHUB_API_URL": fake.url,
                    "VMRUNNER_GITHUB_GIT_URL": origin.template, "VMRUNNER_LEASE_S": "4"}  # fmt: skip
        self.server: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.engine = create_engine(db.replace("postgresql://", "postgresql+psycopg://", 1))

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        log = (
            Path(self.env["VMRUNNER_HOME"]).parent / f"{args[0]}-{time.monotonic_ns()}.log"
        ).open("wb")
        return subprocess.Popen([sys.executable, "-m", "vmrunner", *args], env=self.env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def serve(self, workers: int = 0) -> None:
        self.server = self._spawn("serve", "--port", str(self.port), "--workers", str(workers),
                                  "--grace", "60")  # fmt: skip
        url = f"http://127.0.0.1:{self.port}/healthz"

        def up() -> bool:
            assert self.server is not None and self.server.poll() is None, "serve exited"
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(url, timeout=1).status_code == 200
            return False

        wait_for("serve to answer", up, 60)

    def worker(self, capacity: int = 1) -> subprocess.Popen[bytes]:
        proc = self._spawn("worker", "--capacity", str(capacity), "--grace", "30")
        self.workers.append(proc)
        return proc

    def post(self, event: str, payload: dict[str, Any], delivery: str) -> httpx.Response:
        body = json.dumps(payload).encode()
        return httpx.post(f"http://127.0.0.1:{self.port}/webhook", content=body, timeout=10,
                          headers={"X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
                                   "X-Hub-Signature-256": sign(SECRET.encode(), body),
                                   "Content-Type": "application/json"})  # fmt: skip

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params))

    def statuses(self, sha: str) -> dict[str, str]:
        return self.fake.latest_statuses(self.origin.full_name, sha)

    def stop(self) -> None:
        for proc in [*self.workers, *([self.server] if self.server else [])]:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*self.workers, *([self.server] if self.server else [])]:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        self.engine.dispose()


@pytest.fixture
def deployment(
    tmp_path: Path, pg_cluster: PgCluster, github_fake: FakeGitHub
) -> Iterator[Deployment]:
    d = Deployment(tmp_path, pg_cluster.url, Origin(tmp_path / "github", "octo/demo"), github_fake)
    try:
        yield d
    finally:
        d.stop()


def _qemu_of(state: Path) -> list[int]:
    """QEMU processes whose command line names this test's state directory."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if argv and b"qemu-system" in argv[0] and str(state).encode() in b" ".join(argv):
                    found.append(int(proc.name))
    return found


def test_a_signed_push_runs_in_vms_on_two_workers_and_reports_to_github(
    deployment: Deployment,
) -> None:
    d = deployment
    sha = d.origin.commit({".github/workflows/pass.yml": PASS, ".github/workflows/fail.yml": FAIL})
    d.serve()
    d.worker()
    d.worker()
    r = d.post("push", d.origin.push(sha), "push-1")
    assert r.status_code == 202, r.text
    final = {"vmrunner/pass/build": "success", "vmrunner/fail/test": "failure"}
    wait_for("the final statuses", lambda: d.statuses(sha) == final)
    for context in final:
        states = [s["state"] for s in d.fake.statuses("octo/demo", sha) if s["context"] == context]
        assert states[0] == "pending" and states[-1] == final[context], states
    runs = d.rows("SELECT status, document FROM runs ORDER BY id")
    assert sorted(r.status for r in runs) == ["failure", "success"]
    owners = d.rows("SELECT DISTINCT lease_owner FROM queue")
    assert len(owners) == 2, "each worker (capacity 1) took one of the two runs"
    passed = next(json.loads(r.document) for r in runs if r.status == "success")
    assert passed["jobs"][0]["steps"][0]["outcome"] == "success" and passed["accel"] in (
        "tcg",
        "kvm",
    )
    # a redelivery of the same delivery id changes nothing
    assert d.post("push", d.origin.push(sha), "push-1").status_code == 200
    assert len(d.rows("SELECT id FROM queue")) == 2


def test_an_app_gets_check_runs_from_real_processes(
    deployment: Deployment, tmp_path: Path, github_app_key: AppKey
) -> None:
    d = deployment
    (tmp_path / "app.pem").write_text(github_app_key.private_pem)
    d.env.update(VMRUNNER_GITHUB_TOKEN="", VMRUNNER_GITHUB_APP_ID=APP_ID,
                 VMRUNNER_GITHUB_APP_PRIVATE_KEY_FILE=str(tmp_path / "app.pem"))  # fmt: skip
    sha = d.origin.commit({".github/workflows/pass.yml": PASS, ".github/workflows/fail.yml": FAIL})
    d.serve()
    d.worker(capacity=2)
    assert d.post("push", d.origin.push(sha), "app-1").status_code == 202

    def completed() -> dict[str, str]:
        runs = d.fake.check_runs("octo/demo", sha)
        done = {c["name"]: c["conclusion"] for c in runs if c["status"] == "completed"}
        return done if len(done) == 2 else {}

    assert wait_for("both check runs completed", completed) == {
        "pass / build": "success",
        "fail / test": "failure",
    }
    for check in d.fake.check_runs("octo/demo", sha):
        assert [h["status"] for h in check.history if "status" in h][:2] == [
            "queued",
            "in_progress",
        ]
    failing = next(c for c in d.fake.check_runs("octo/demo", sha) if c["name"] == "fail / test")
    assert "the failing step" in failing["output"]["summary"]


def test_kill_9_of_the_server_after_the_202_loses_no_delivery(deployment: Deployment) -> None:
    d = deployment
    sha = d.origin.commit({".github/workflows/pass.yml": PASS})
    d.serve()
    assert d.post("push", d.origin.push(sha), "crash-1").status_code == 202
    assert d.server is not None
    os.killpg(d.server.pid, signal.SIGKILL)
    d.server.wait(timeout=30)
    [(status,)] = d.rows("SELECT status FROM deliveries WHERE id = 'crash-1'")
    assert status in ("received", "processing", "processed")
    d.serve()
    d.worker()
    wait_for("the run's success", lambda: d.statuses(sha) == {"vmrunner/pass/build": "success"})
    assert d.rows("SELECT status FROM deliveries WHERE id = 'crash-1'")[0][0] == "processed"
    assert len(d.rows("SELECT id FROM queue WHERE delivery_id = 'crash-1'")) == 1


def test_kill_9_of_a_worker_mid_job_fails_the_run_after_the_lease_and_reaps_its_vm(
    deployment: Deployment, tmp_path: Path
) -> None:
    d = deployment
    sha = d.origin.commit({".github/workflows/slow.yml": SLOW})
    d.serve()
    victim = d.worker()
    assert d.post("push", d.origin.push(sha), "slow-1").status_code == 202
    log = wait_for(
        "the run's directory",
        lambda: next(iter((tmp_path / "state" / "runs").glob("*/output.log")), None),
    )
    wait_for("the slow step to start", lambda: "started-slow-step" in log.read_text())
    assert _qemu_of(tmp_path / "state"), "the job's VM runs"
    os.kill(victim.pid, signal.SIGKILL)  # the worker alone, as a crash would
    victim.wait(timeout=30)
    # the scheduler in serve expires the lease (4 s) and fails the run
    rows = wait_for(
        "the run to fail",
        lambda: d.rows("SELECT status, document FROM runs WHERE status = 'error'"),
    )
    assert json.loads(rows[0].document)["errors"][0]["kind"] == "worker_lost"
    wait_for(
        "the error status",
        lambda: d.statuses(sha).get("vmrunner/slow/wait") in ("error", "failure"),
    )
    d.worker()  # the next start on this host reaps what the killed worker left running
    wait_for("the orphaned VM to be reaped", lambda: not _qemu_of(tmp_path / "state"), 60)


def test_postgresql_restarted_during_a_run(deployment: Deployment, pg_cluster: PgCluster) -> None:
    d = deployment
    sha = d.origin.commit({".github/workflows/slow.yml": SLOW.replace("sleep 25", "sleep 12")})
    d.serve()
    d.worker()
    assert d.post("push", d.origin.push(sha), "pg-1").status_code == 202
    wait_for("the run to start", lambda: d.rows("SELECT id FROM runs WHERE status = 'running'"))
    d.engine.dispose()
    pg_cluster.stop()
    time.sleep(3)
    pg_cluster.start()
    wait_for("the run's success", lambda: d.statuses(sha) == {"vmrunner/slow/wait": "success"})
    [(status,)] = d.rows("SELECT status FROM runs")
    assert status == "success"


def test_sigterm_drains_a_worker_its_run_finishes_and_nothing_new_starts(
    deployment: Deployment, tmp_path: Path
) -> None:
    d = deployment
    slow = SLOW.replace("sleep 25", "sleep 8")
    sha = d.origin.commit({".github/workflows/slow.yml": slow})
    d.serve()
    worker = d.worker(capacity=2)
    assert d.post("push", d.origin.push(sha), "drain-1").status_code == 202
    log = wait_for(
        "the run's directory",
        lambda: next(iter((tmp_path / "state" / "runs").glob("*/output.log")), None),
    )
    wait_for("the slow step to start", lambda: "started-slow-step" in log.read_text())
    os.kill(worker.pid, signal.SIGTERM)
    time.sleep(1)
    assert worker.poll() is None, "the worker drains: its running run goes on"
    later = d.origin.commit({"other": "x"}, branch="other")
    assert d.post("push", d.origin.push(later, branch="other"), "drain-2").status_code == 202
    assert worker.wait(timeout=180) == 0
    # the worker put the final report in the outbox before it left; serve sends it
    wait_for("the success status", lambda: d.statuses(sha) == {"vmrunner/slow/wait": "success"}, 60)
    states = dict(d.rows("SELECT delivery_id, state FROM queue"))
    assert states == {"drain-1": "done", "drain-2": "pending"}, "nothing new was claimed"
    assert d.rows("SELECT id FROM workers") == [], "the worker left the registry"


def test_sigterm_of_serve_drains_its_local_worker_the_run_finishes(
    deployment: Deployment, tmp_path: Path
) -> None:
    """serve's local worker lives in serve's background process: SIGTERM of serve (its
    process group only) drains that process too, and serve exits 0 once the run ends."""
    d = deployment
    sha = d.origin.commit({".github/workflows/slow.yml": SLOW.replace("sleep 25", "sleep 8")})
    d.serve(workers=1)
    assert d.post("push", d.origin.push(sha), "serve-drain").status_code == 202
    log = wait_for(
        "the run's directory",
        lambda: next(iter((tmp_path / "state" / "runs").glob("*/output.log")), None),
    )
    wait_for("the slow step to start", lambda: "started-slow-step" in log.read_text())
    assert d.server is not None
    os.killpg(d.server.pid, signal.SIGTERM)
    time.sleep(1)
    assert d.server.poll() is None, "serve drains: its running run goes on"
    assert d.server.wait(timeout=180) == 0
    [(status,)] = d.rows("SELECT status FROM runs")
    assert status == "success"
    assert _qemu_of(tmp_path / "state") == []
