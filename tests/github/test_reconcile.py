"""Missed webhook deliveries: the choice (pure, a table) and the reconciler against the
fake GitHub and a real store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.github.client import GitHubClient
from vmrunner.github.reconcile import to_redeliver
from vmrunner.services.reporting import Reconciler
from vmrunner.store.deliveries import DeliveryStore
from vmrunner.store.engine import Store, open_store

from .conftest import APP_ID, TOKEN, AppKey
from .fake import FakeGitHub


@dataclass(frozen=True)
class A:
    id: int
    guid: str
    status_code: int
    redelivery: bool = False


CASES = [
    ("a failed unknown delivery", [A(1, "g", 502)], set(), [1]),
    ("a delivered one", [A(1, "g", 202)], set(), []),
    ("failed but stored (the answer was lost)", [A(1, "g", 0)], {"g"}, []),
    ("failed, then redelivered fine", [A(1, "g", 502), A(2, "g", 200, True)], set(), []),
    ("failed twice: the newest attempt", [A(1, "g", 502), A(5, "g", 504, True)], set(), [5]),
    ("given up after three redeliveries",
     [A(1, "g", 502), *(A(i, "g", 502, True) for i in (2, 3, 4))], set(), []),
    ("several events, oldest first", [A(9, "b", 500), A(3, "a", 500), A(4, "c", 200)], set(), [3, 9]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "attempts", "known", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_to_redeliver(name: str, attempts: list[A], known: set[str], expected: list[int]) -> None:
    assert to_redeliver(attempts, known) == expected


@given(st.lists(st.builds(A, st.integers(1, 50), st.sampled_from("abcdef"),
                          st.sampled_from([0, 200, 202, 404, 500, 502]), st.booleans()),
                max_size=40, unique_by=lambda a: a.id),  # attempt ids are unique
       st.sets(st.sampled_from("abcdef")))  # fmt: skip
def test_to_redeliver_properties(attempts: list[A], known: set[str]) -> None:
    chosen = to_redeliver(attempts, known)
    by_id = {a.id: a for a in attempts}
    guids = [by_id[i].guid for i in chosen]
    assert len(guids) == len(set(guids))  # at most one per event
    for guid in guids:
        tries = [a for a in attempts if a.guid == guid]
        assert guid not in known and all(not 200 <= a.status_code < 300 for a in tries)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'vmrunner.db'}")
    try:
        yield s
    finally:
        s.close()


def test_the_reconciler_redelivers_exactly_the_missed_ones(
    store: Store, github_fake: FakeGitHub, github_app_key: AppKey
) -> None:
    now = time.time()
    github_fake.add_delivery("ancient", 502, delivered_at=now - 30 * 3600)  # before the lookback
    missed = github_fake.add_delivery("missed-1", 502, delivered_at=now - 300)
    github_fake.add_delivery("stored-but-timed-out", 0, delivered_at=now - 200)
    github_fake.add_delivery("fine", 202, delivered_at=now - 100)
    retried = github_fake.add_delivery("missed-2", 503, delivered_at=now - 50)
    github_fake.add_delivery("missed-2", 503, redelivery=True, delivered_at=now - 40)
    for i in range(150):  # more than a page: the client must follow the Link header
        github_fake.add_delivery(f"ok-{i}", 200, delivered_at=now - 10)
    DeliveryStore(store).add("stored-but-timed-out", "push", "{}")
    client = GitHubClient(github_fake.url, app_id=APP_ID, private_key=github_app_key.private_pem)
    reconciler = Reconciler(store, client)
    done = reconciler.run_once(now)
    newest_missed_2 = retried + 1
    assert done == sorted([missed, newest_missed_2]) == sorted(github_fake.redelivered)
    pages = [r for r in github_fake.requests if r.operation == "apps/list-webhook-deliveries"]
    assert len(pages) == 2 and pages[1].query.get("cursor")


def test_the_reconciler_needs_an_app(store: Store, github_fake: FakeGitHub) -> None:
    github_fake.add_delivery("missed", 502)
    assert Reconciler(store, GitHubClient(github_fake.url, token=TOKEN)).run_once() == []
    assert github_fake.requests == []
