"""The GitHub runner service in one process, on both databases: kept deliveries through
the scheduler, the shared queue and a worker, to the reports at a fake GitHub that
checks every request against GitHub's OpenAPI description.

The worker's "VMs" here run each step as a host process (``tests/runner/fakes.py``), so
these tests are about the service's logic; ``test_serve_vm.py`` runs the real processes
with real VMs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from github.conftest import APP_ID, TOKEN, AppKey
from github.fake import FakeGitHub
from runner.fakes import HostFactory
from server.origin import FAIL, PASS, Origin, example
from vmrunner.config import load_settings
from vmrunner.services.core import Services
from vmrunner.services.reporting import Sender
from vmrunner.services.requests import run_filter
from vmrunner.services.scheduler import (
    Scheduler,
    expire_leases,
    github_client,
    repo_cache,
    reporter,
)
from vmrunner.services.worker import Worker
from vmrunner.store.deliveries import DeliveryStore
from vmrunner.store.queue import Queue


class World:
    """One service (store, scheduler, worker, sender) over ``origin`` and ``fake``."""

    def __init__(
        self, tmp: Path, db_url: str, origin: Origin, fake: FakeGitHub, app_key: str = ""
    ) -> None:
        env = {"VMRUNNER_HOME": str(tmp / "state"), "VMRUNNER_CACHE": str(tmp / "cache"),
               "VMRUNNER_DATABASE_URL": db_url, "VMRUNNER_GITHUB_TOKEN": TOKEN,
               "VMRUNNER_GITHUB_API_URL": fake.url, "VMRUNNER_GITHUB_GIT_URL": origin.template,
               "VMRUNNER_LEASE_S": "2"}  # fmt: skip
        if app_key:  # a GitHub App: check runs instead of commit statuses
            (tmp / "app.pem").write_text(app_key)
            env.update(VMRUNNER_GITHUB_TOKEN="", VMRUNNER_GITHUB_APP_ID=APP_ID,
                       VMRUNNER_GITHUB_APP_PRIVATE_KEY_FILE=str(tmp / "app.pem"))  # fmt: skip
        self.settings = load_settings(env=env)
        self.services = Services(self.settings)
        self.origin, self.fake = origin, fake
        self.reporter = reporter(self.services)
        self.scheduler = Scheduler(self.services, repo_cache(self.settings), self.reporter)
        self.queue = Queue(self.services.store, lease_s=2)
        self.sender = Sender(self.services.store, github_client(self.settings))
        self.n = 0

    def deliver(self, event: str, payload: dict[str, Any], delivery: str | None = None) -> str:
        self.n += 1
        delivery = delivery or f"d-{self.n}"
        DeliveryStore(self.services.store).add(delivery, event, json.dumps(payload),
                                               action=payload.get("action"),
                                               repo=self.origin.full_name)  # fmt: skip
        return delivery

    def work(self, capacity: int = 2, timeout: float = 60.0) -> None:
        """Run a worker until the queue has nothing pending or claimed."""
        worker = Worker(self.services, repo_cache(self.settings), self.reporter, capacity,
                        factory=HostFactory(), grace_s=10)  # fmt: skip

        async def main() -> None:
            stop = asyncio.Event()
            task = asyncio.ensure_future(worker.run(stop))
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                depth = self.queue.depth()
                if not depth.get("pending") and not depth.get("claimed"):
                    break
                await asyncio.sleep(0.1)
            stop.set()
            await task

        asyncio.run(main())

    def send_reports(self) -> None:
        for _ in range(50):
            if self.sender.send_once() == 0:
                return

    def statuses(self, sha: str) -> dict[str, str]:
        return self.fake.latest_statuses(self.origin.full_name, sha)


@pytest.fixture
def world(tmp_path: Path, db_url: str, github_fake: FakeGitHub) -> Iterator[World]:
    origin = Origin(tmp_path / "github", "octo/demo")
    w = World(tmp_path, db_url, origin, github_fake)
    try:
        yield w
    finally:
        w.services.close()


def test_a_push_runs_each_triggered_workflow_and_reports_every_job(world: World) -> None:
    sha = world.origin.commit({".github/workflows/pass.yml": PASS,
                               ".github/workflows/fail.yml": FAIL})  # fmt: skip
    delivery = world.deliver("push", world.origin.push(sha))
    assert world.scheduler.process_once() == 1
    assert DeliveryStore(world.services.store).get(delivery).status == "processed"  # type: ignore[union-attr]
    world.send_reports()
    assert world.statuses(sha) == {"vmrunner/pass/build": "pending",
                                   "vmrunner/fail/test": "pending"}  # fmt: skip
    world.work()
    world.send_reports()
    assert world.statuses(sha) == {"vmrunner/pass/build": "success",
                                   "vmrunner/fail/test": "failure"}  # fmt: skip
    sequence = [(s["context"], s["state"]) for s in world.fake.statuses("octo/demo", sha)]
    for context in ("vmrunner/pass/build", "vmrunner/fail/test"):
        states = [state for c, state in sequence if c == context]
        assert states[0] == "pending" and states[-1] in ("success", "failure")
    failed = [s for s in world.fake.statuses("octo/demo", sha) if s["state"] == "failure"]
    assert "the failing step" in failed[0]["description"]
    runs = world.services.list_runs(run_filter())
    assert sorted(r.status for r in runs) == ["failure", "success"]
    assert {r.repo for r in runs} == {"octo/demo"} and {r.sha for r in runs} == {sha}
    # every command went into learning with its repository, branch and commit
    with world.services.store.read() as conn:
        learned = set(
            conn.execute(text("SELECT repo, branch, commit_sha, exit_code FROM learn_observations"))
        )
    assert learned == {("octo/demo", "main", sha, 0), ("octo/demo", "main", sha, 3)}


def test_a_pull_request_whose_paths_do_not_match_runs_nothing(world: World) -> None:
    wf = PASS.replace("on: push", "on:\n  pull_request:\n    paths: ['src/**']")
    base = world.origin.commit({".github/workflows/pass.yml": wf})
    head = world.origin.commit({"docs/readme.md": "words"}, branch="topic")
    delivery = world.deliver(
        "pull_request", world.origin.pull_request("opened", head, base, "topic")
    )
    world.scheduler.process_once()
    kept = DeliveryStore(world.services.store).get(delivery)
    assert kept is not None and kept.status == "processed"
    assert "no workflow triggered" in kept.note and "paths" in kept.note
    assert world.queue.list() == [] and world.services.list_runs(run_filter()) == []


def test_a_delivery_replayed_ten_times_makes_one_run(world: World) -> None:
    sha = world.origin.commit({".github/workflows/pass.yml": PASS})
    payload = world.origin.push(sha)
    for _ in range(10):
        world.deliver("push", payload, delivery="same-id")
        world.scheduler.process_once()
    assert len(world.queue.list()) == 1


def test_an_invalid_workflow_is_one_error_status_naming_file_and_line(world: World) -> None:
    broken = "name: broken\non: push\njobs:\n  x:\n    runs-on: [unclosed\n"
    sha = world.origin.commit({".github/workflows/broken.yml": broken,
                               ".github/workflows/pass.yml": PASS})  # fmt: skip
    world.deliver("push", world.origin.push(sha))
    world.scheduler.process_once()
    world.work()
    world.send_reports()
    errors = [s for s in world.fake.statuses("octo/demo", sha) if s["state"] == "error"]
    assert len(errors) == 1 and "broken.yml" in errors[0]["context"] + errors[0]["description"]
    assert "line" in errors[0]["description"] or ":5" in errors[0]["description"]
    assert world.statuses(sha)["vmrunner/pass/build"] == "success"


def test_three_quick_pushes_to_one_branch_cancel_the_middle_one(world: World) -> None:
    shas = [
        world.origin.commit({".github/workflows/pass.yml": PASS, "n": str(i)}) for i in range(3)
    ]
    for i, sha in enumerate(shas):
        world.deliver("push", world.origin.push(sha, before=shas[i - 1] if i else "0" * 40))
        world.scheduler.process_once()
        if i == 0:  # a worker takes the first: it is running when the others arrive
            assert [item.id for item in world.queue.claim("w-test", 1)]
    items = {item.sha: item for item in world.queue.list()}
    assert [items[s].state for s in shas] == ["claimed", "cancelled", "pending"]
    assert world.services.get(items[shas[1]].run_id).status == "cancelled"
    # the first finishes; then the newest runs
    first = items[shas[0]]
    assert world.queue.finish(first.id, first.fence)
    world.work()
    assert world.services.get(items[shas[2]].run_id).status == "success"
    world.send_reports()
    assert world.statuses(shas[1])["vmrunner/pass/build"] in ("error", "failure")
    assert world.statuses(shas[2])["vmrunner/pass/build"] == "success"


def test_a_run_whose_worker_stops_renewing_fails_with_worker_lost(world: World) -> None:
    sha = world.origin.commit({".github/workflows/pass.yml": PASS})
    world.deliver("push", world.origin.push(sha))
    world.scheduler.process_once()
    [item] = world.queue.claim("a-worker-that-dies", 1)
    world.services.runs.start(item.run_id)
    time.sleep(2.5)  # the lease (2 s) passes without a renewal
    assert expire_leases(world.services, world.queue, world.reporter) == 1
    record = world.services.get(item.run_id)
    assert record.status == "error" and record.document is not None
    assert record.document["errors"][0]["kind"] == "worker_lost"
    assert not world.queue.finish(item.id, item.fence)  # the stale worker is fenced off
    world.send_reports()
    assert world.statuses(sha)["vmrunner/pass/build"] in ("error", "failure")


def test_a_queued_run_cancelled_before_a_worker_takes_it(world: World) -> None:
    sha = world.origin.commit({".github/workflows/pass.yml": PASS})
    world.deliver("push", world.origin.push(sha))
    world.scheduler.process_once()
    [item] = world.queue.list()
    assert world.services.cancel(item.run_id).status == "cancelled"
    assert world.queue.get(item.id).state == "cancelled"  # type: ignore[union-attr]
    world.send_reports()
    assert world.statuses(sha)["vmrunner/pass/build"] in ("error", "failure")


def test_reports_survive_bad_gateways_and_a_rate_limit(world: World) -> None:
    sha = world.origin.commit({".github/workflows/pass.yml": PASS})
    world.deliver("push", world.origin.push(sha))
    world.scheduler.process_once()
    world.fake.fail_next(2, status=502)
    world.fake.rate_limit_next(1, reset_in_s=1)
    world.work()
    clock = time.time()
    for step in range(1, 30):  # each pass is later than any back-off so far
        world.sender.send_once(now=clock + 3600 * step)
        if world.statuses(sha).get("vmrunner/pass/build") == "success":
            break
    answered = [r.status for r in world.fake.requests if "/statuses/" in r.path]
    assert answered.count(502) == 2 and answered.count(403) == 1, answered
    seen = [(s["state"], s["description"]) for s in world.fake.statuses("octo/demo", sha)]
    # queued, running, done: in order, none lost, none twice
    assert [state for state, _ in seen] == ["pending", "pending", "success"], seen
    assert "queued" in seen[0][1].lower() and "running" in seen[1][1].lower(), seen


@pytest.fixture
def app_world(tmp_path: Path, github_fake: FakeGitHub, github_app_key: AppKey) -> Iterator[World]:
    origin = Origin(tmp_path / "github", "octo/demo")
    w = World(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", origin, github_fake,
              app_key=github_app_key.private_pem)  # fmt: skip
    try:
        yield w
    finally:
        w.services.close()


def test_an_app_gets_one_check_run_per_job_queued_in_progress_completed(app_world: World) -> None:
    w = app_world
    sha = w.origin.commit({".github/workflows/pass.yml": PASS, ".github/workflows/fail.yml": FAIL})
    w.deliver("push", w.origin.push(sha))
    # GitHub also tells an App about the same push as a requested check suite
    suite = example("check_suite", action="requested")
    suite["repository"] = w.origin.repository(suite["repository"])
    suite["check_suite"].update(head_sha=sha, head_branch="main")
    w.deliver("check_suite", suite)
    assert w.scheduler.process_once() == 2
    assert len(w.queue.list()) == 2, "the push's workflows are not queued a second time"
    w.work()
    w.send_reports()
    checks = {c["name"]: c for c in w.fake.check_runs("octo/demo", sha)}
    assert set(checks) == {"pass / build", "fail / test"}
    assert checks["pass / build"]["conclusion"] == "success"
    assert checks["fail / test"]["conclusion"] == "failure"
    assert checks["pass / build"]["external_id"] == ".github/workflows/pass.yml#build"
    summary = checks["fail / test"]["output"]["summary"]
    assert "the failing step" in summary
    assert [h.get("status") for h in checks["pass / build"].history if h.get("status")][:2] == [
        "queued",
        "in_progress",
    ]
    assert w.fake.statuses("octo/demo", sha) == []


def test_an_app_fetches_with_an_installation_token_of_the_repository(app_world: World) -> None:
    client = github_client(app_world.settings)
    token = client.git_token("octo/demo")
    assert token and client.git_token("octo/demo") == token  # kept until near its expiry
    minted = [r for r in app_world.fake.requests if r.path.endswith("/access_tokens")]
    assert len(minted) == 1
    env = repo_cache(app_world.settings, client)._env(
        "http://127.0.0.1:9/octo/demo.git", "octo/demo"
    )
    header = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    assert f"Authorization: Basic {header}" in env.values()


def test_a_run_the_worker_cannot_start_ends_error_and_is_reported(world: World) -> None:
    sha = world.origin.commit({".github/workflows/pass.yml": PASS})
    world.deliver("push", world.origin.push(sha))
    world.scheduler.process_once()
    [item] = world.queue.list()
    world.services.store.write(  # as if the workflow file were not at that commit
        lambda c: c.execute(text("UPDATE queue SET workflow = '.github/workflows/gone.yml'"))
    )
    world.work()
    record = world.services.get(item.run_id)
    assert record.status == "error" and record.document is not None
    assert "the worker could not run it" in record.document["errors"][0]["message"]
    assert world.queue.get(item.id).state == "done"  # type: ignore[union-attr]
    world.send_reports()
    assert world.statuses(sha)["vmrunner/pass/build"] in ("error", "failure")
