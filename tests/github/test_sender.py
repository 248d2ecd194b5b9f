"""The outbox sender against the fake GitHub (which validates every request against
GitHub's OpenAPI description): order, retries, rate limits, check run ids."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vmrunner.github.client import GitHubClient
from vmrunner.github.reports import ItemFacts
from vmrunner.results.workflow import Annotation, JobEntry, RunDocument, StepEntry
from vmrunner.services.reporting import Reporter, Sender
from vmrunner.store.engine import Store, open_store
from vmrunner.store.outbox import Outbox

from .conftest import APP_ID, TOKEN, AppKey
from .fake import FakeGitHub

SHA = "d" * 40
FACTS = ItemFacts("octo/hello", SHA, ".github/workflows/ci.yml", "CI", 5)
JOBS = [("build", "Build"), ("test", "Test")]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'vmrunner.db'}")
    try:
        yield s
    finally:
        s.close()


def result(*, annotations: int = 0) -> dict[str, Any]:
    notes = tuple(Annotation("error", f"e{i}", file="a.py", line=i + 1) for i in range(annotations))
    failed = StepEntry(
        "t", "Run tests", "failure", "failure", 1, log_tail="boom\n", annotations=notes
    )
    jobs = (JobEntry("build", "Build", "success", steps=(StepEntry("m", "Make", "success", "success", 0),)),
            JobEntry("test", "Test", "failure", steps=(failed,)))  # fmt: skip
    return RunDocument("5", "workflow", "failure", 1.0, 2.0, jobs=jobs).to_dict()


def drain(sender: Sender, now: float, rounds: int = 50) -> float:
    """Send until nothing is pending, jumping the clock to the next due row; the clock."""
    box = sender.outbox
    for _ in range(rounds):
        sender.send_once(now)
        due = box.next_due_at()
        if due is None:
            return now
        now = max(now + 0.001, due, sender.paused_until)
    raise AssertionError(f"the outbox did not drain: {box.counts()}")


def test_statuses_land_in_order(store: Store, github_fake: FakeGitHub) -> None:
    reporter = Reporter(store, "token", "https://ci.example.org")
    sender = Sender(store, GitHubClient(github_fake.url, token=TOKEN))
    reporter.queued(FACTS, JOBS)
    reporter.started(FACTS, JOBS, host="h1")
    reporter.finished(FACTS, result())
    drain(sender, time.time())
    got = [
        (s["context"], s["state"], s["description"])
        for s in github_fake.statuses("octo/hello", SHA)
    ]
    for job, final in (("build", "success"), ("test", "failure")):
        mine = [(state, text) for context, state, text in got if context == f"vmrunner/CI/{job}"]
        assert [state for state, _ in mine] == ["pending", "pending", final]
        assert [text for _, text in mine][:2] == ["queued", "running on h1"]
    assert github_fake.latest_statuses("octo/hello", SHA)["vmrunner/CI/test"] == "failure"
    assert Outbox(store).counts() == {"pending": 0, "sent": 6, "dead": 0}


def test_a_502_is_retried_with_backoff(store: Store, github_fake: FakeGitHub) -> None:
    sender = Sender(store, GitHubClient(github_fake.url, token=TOKEN))
    Reporter(store, "token").queued(FACTS, JOBS[:1])
    github_fake.fail_next(1, 502)
    now = time.time()
    assert sender.send_once(now) == 0
    (row,) = Outbox(store).rows()
    assert (row.state, row.attempts) == ("pending", 1) and "502" in row.last_error
    assert now + 1.0 <= row.next_at <= now + 2.0  # 2 s, jittered down to half
    assert sender.send_once(row.next_at - 0.01) == 0
    assert sender.send_once(row.next_at) == 1
    assert [r.status for r in github_fake.requests] == [502, 201]
    assert len(github_fake.statuses("octo/hello", SHA)) == 1


def test_a_rate_limit_holds_every_row_until_the_reset(
    store: Store, github_fake: FakeGitHub
) -> None:
    sender = Sender(store, GitHubClient(github_fake.url, token=TOKEN))
    Reporter(store, "token").queued(FACTS, [("a", "a"), ("b", "b"), ("c", "c")])
    reset = github_fake.rate_limit_next(1, reset_in_s=1)
    now = time.time()
    assert sender.send_once(now) == 0
    assert sender.paused_until == reset
    assert [r.next_at for r in Outbox(store).rows()] == [reset, reset, reset]
    assert sender.send_once(reset - 0.5) == 0
    assert len(github_fake.requests) == 1  # nothing more was tried before the reset
    assert sender.send_once(reset) == 3
    assert sorted(github_fake.latest_statuses("octo/hello", SHA)) == [
        "vmrunner/CI/a", "vmrunner/CI/b", "vmrunner/CI/c"]  # fmt: skip


def test_retry_after_is_honoured(store: Store, github_fake: FakeGitHub) -> None:
    sender = Sender(store, GitHubClient(github_fake.url, token=TOKEN))
    Reporter(store, "token").queued(FACTS, JOBS[:1])
    github_fake.retry_after_next(1, seconds=30)
    before = time.time()
    assert sender.send_once(before) == 0
    (row,) = Outbox(store).rows()
    assert row.next_at >= before + 30
    assert sender.send_once(row.next_at - 1) == 0
    assert sender.send_once(row.next_at) == 1


def test_a_refused_row_is_dead_and_its_key_goes_on(store: Store, github_fake: FakeGitHub) -> None:
    sender = Sender(store, GitHubClient(github_fake.url, token=TOKEN))
    reporter = Reporter(store, "token")
    reporter.queued(FACTS, JOBS[:1])
    reporter.finished(FACTS, result(), [("build", "Build")])
    github_fake.fail_next(1, 422)
    drain(sender, time.time())
    rows = Outbox(store).rows()
    assert [r.state for r in rows] == ["dead", "sent", "sent"]
    assert "422" in rows[0].last_error
    assert github_fake.latest_statuses("octo/hello", SHA)["vmrunner/CI/build"] == "success"


def test_a_timeout_is_retried(store: Store, github_fake: FakeGitHub) -> None:
    sender = Sender(store, GitHubClient(github_fake.url, token=TOKEN, timeout_s=0.5))
    Reporter(store, "token").queued(FACTS, JOBS[:1])
    github_fake.hang_next(1, seconds=2.0)
    assert sender.send_once(time.time()) == 0
    (row,) = Outbox(store).rows()
    assert row.state == "pending" and "unreachable" in row.last_error
    drain(sender, time.time())
    assert Outbox(store).counts()["sent"] == 1


def app_client(fake: FakeGitHub, key: AppKey) -> GitHubClient:
    return GitHubClient(fake.url, app_id=APP_ID, private_key=key.private_pem)


def test_check_runs_are_created_then_updated(
    store: Store, github_fake: FakeGitHub, github_app_key: AppKey
) -> None:
    reporter = Reporter(store, "app", "https://ci.example.org")
    sender = Sender(store, app_client(github_fake, github_app_key))
    reporter.queued(FACTS, JOBS)
    drain(sender, time.time())
    reporter.started(FACTS, JOBS)
    reporter.finished(FACTS, result(annotations=120))
    drain(sender, time.time())
    runs = {c["name"]: c for c in github_fake.check_runs("octo/hello", SHA)}
    assert sorted(runs) == ["CI / build", "CI / test"]
    test = runs["CI / test"]
    assert (test["status"], test["conclusion"], test["external_id"]) == (
        "completed", "failure", ".github/workflows/ci.yml#test")  # fmt: skip
    assert [h.get("status") for h in test.history] == [
        "queued",
        "in_progress",
        "completed",
        None,
        None,
    ]
    assert len(test.annotations) == 120 and test.annotations[119]["message"] == "e119"
    assert runs["CI / build"]["conclusion"] == "success"
    calls = [(r.method, r.operation) for r in github_fake.requests if "check-runs" in r.path]
    assert calls.count(("POST", "checks/create")) == 2  # once per job: the id was kept
    assert calls.count(("PATCH", "checks/update")) == 2 + 4
    kept = {r.result["id"] for r in Outbox(store).rows() if r.kind == "check_run" and r.result}
    assert kept == {test.id, runs["CI / build"].id}


def test_app_token_trouble_is_retried(
    store: Store, github_fake: FakeGitHub, github_app_key: AppKey
) -> None:
    sender = Sender(store, app_client(github_fake, github_app_key))
    Reporter(store, "app").queued(FACTS, JOBS[:1])
    github_fake.fail_next(1, 503, match="/access_tokens")
    drain(sender, time.time())
    assert [r.operation for r in github_fake.requests] == [
        "apps/get-repo-installation", "apps/create-installation-access-token",
        "apps/create-installation-access-token", "checks/create"]  # fmt: skip
    assert len(github_fake.check_runs("octo/hello", SHA)) == 1


def test_an_uninstalled_repository_is_dead(
    store: Store, github_fake: FakeGitHub, github_app_key: AppKey
) -> None:
    sender = Sender(store, app_client(github_fake, github_app_key))
    Reporter(store, "app").queued(ItemFacts("stranger/repo", SHA, "ci.yml", "", 1), JOBS[:1])
    assert sender.send_once(time.time()) == 0
    assert Outbox(store).counts() == {"pending": 0, "sent": 0, "dead": 1}


def test_a_ghes_api_url_works(store: Store, github_app_key: AppKey) -> None:
    fake = FakeGitHub(app_id=APP_ID, public_key_pem=github_app_key.public_pem, tokens=(TOKEN,),
                      installations={"octo": 1}, prefix="/api/v3").start()  # fmt: skip
    try:
        Reporter(store, "token").queued(FACTS, JOBS)
        drain(Sender(store, GitHubClient(fake.url, token=TOKEN)), time.time())
        assert all(r.path.startswith("/api/v3/repos/octo/hello/statuses/") for r in fake.requests)
        assert len(fake.statuses("octo/hello", SHA)) == 2
    finally:
        fake.close()
    assert fake.violations == []


def test_run_sends_until_stopped(store: Store, github_fake: FakeGitHub) -> None:
    sender = Sender(store, GitHubClient(github_fake.url, token=TOKEN))
    reporter = Reporter(store, "token")
    reporter.queued(FACTS, JOBS)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(stop, poll_s=0.05))
        for _ in range(400):  # a bound, not a timing assertion
            if Outbox(store).counts()["pending"] == 0:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 30)

    asyncio.run(main())
    assert Outbox(store).counts() == {"pending": 0, "sent": 2, "dead": 0}
