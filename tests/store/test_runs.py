"""The run store on SQLite and on the suite's real PostgreSQL: life cycle, listing with
filters and pages, the log index, cancellation flags, and ids from the database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vmrunner.store.engine import open_store
from vmrunner.store.owner import this_host
from vmrunner.store.runs import RunFilter, RunStore


@pytest.fixture
def runs(db_url: str) -> Iterator[RunStore]:
    store = open_store(db_url)
    try:
        yield RunStore(store)
    finally:
        store.close()


def test_a_run_goes_queued_running_final_with_its_document(runs: RunStore) -> None:
    run_id = runs.create("exec", {"argv": ["true"]}, title="true", repo="o/r", branch="main")
    rec = runs.get(run_id)
    assert rec is not None and rec.status == "queued" and rec.active
    assert rec.host == this_host() and rec.request == {"argv": ["true"]} and rec.document is None
    runs.start(run_id)
    assert runs.get(run_id).status == "running"  # type: ignore[union-attr]
    runs.finish(run_id, "success", {"id": run_id, "status": "success"})
    rec = runs.get(run_id)
    assert rec is not None and rec.status == "success" and not rec.active
    assert rec.document == {"id": run_id, "status": "success"} and rec.finished_at is not None


def test_ids_are_distinct_increasing_numbers(runs: RunStore) -> None:
    ids = [runs.create("exec", {}) for _ in range(5)]
    assert all(i.isdigit() for i in ids)
    assert [int(i) for i in ids] == sorted(int(i) for i in ids) and len(set(ids)) == 5


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (RunFilter(), ["w2", "s1", "w1", "e1"]),
        (RunFilter(kind="workflow"), ["w2", "w1"]),
        (RunFilter(status="failure"), ["s1", "w1"]),
        (RunFilter(repo="a/b"), ["w2", "w1"]),
        (RunFilter(branch="dev"), ["w2"]),
        (RunFilter(kind="workflow", status="failure"), ["w1"]),
        (RunFilter(limit=2), ["w2", "s1"]),
        (RunFilter(host="elsewhere"), []),
    ],
)
def test_list_filters_newest_first(runs: RunStore, flt: RunFilter, expected: list[str]) -> None:
    made = {}
    for title, kind, status, repo, branch in [
        ("e1", "exec", "success", None, None), ("w1", "workflow", "failure", "a/b", "main"),
        ("s1", "systest", "failure", None, None), ("w2", "workflow", "success", "a/b", "dev"),
    ]:  # fmt: skip
        made[title] = runs.create(kind, {}, title=title, repo=repo, branch=branch)
        runs.finish(made[title], status, {})
    assert [r.title for r in runs.list(flt)] == expected


def test_pages_go_backwards_without_gaps(runs: RunStore) -> None:
    ids = [runs.create("exec", {}, title=str(n)) for n in range(7)]
    seen: list[str] = []
    before = None
    while True:
        page = runs.list(RunFilter(limit=3, before=before))
        if not page:
            break
        seen += [r.id for r in page]
        before = int(page[-1].id)
    assert seen == list(reversed(ids))


def test_cancel_sets_a_flag_the_owner_reads_on_heartbeat(runs: RunStore) -> None:
    run_id = runs.create("exec", {})
    runs.start(run_id)
    assert runs.heartbeat(run_id) is False
    assert runs.request_cancel(run_id).cancel_requested
    assert runs.heartbeat(run_id) is True


def test_cancelling_a_finished_run_changes_nothing(runs: RunStore) -> None:
    run_id = runs.create("exec", {})
    runs.finish(run_id, "success", {"status": "success"})
    rec = runs.request_cancel(run_id)
    assert rec.status == "success" and not rec.cancel_requested


@pytest.mark.parametrize("bad", ["nope", "", "-1", "999999"])
def test_unknown_ids_are_not_found(runs: RunStore, bad: str) -> None:
    assert runs.get(bad) is None
    with pytest.raises(KeyError):
        runs.request_cancel(bad)


def test_the_log_index_keeps_one_path_per_name(runs: RunStore) -> None:
    run_id = runs.create("workflow", {})
    runs.add_log(run_id, "output", "/x/output.log")
    runs.add_log(run_id, "job/build", "/x/a.log")
    runs.add_log(run_id, "job/build", "/x/b.log")
    assert runs.get(run_id).logs == {"output": "/x/output.log", "job/build": "/x/b.log"}  # type: ignore[union-attr]


def test_a_final_status_is_required_to_finish(runs: RunStore) -> None:
    run_id = runs.create("exec", {})
    with pytest.raises(ValueError, match="not a final status"):
        runs.finish(run_id, "running", {})


def test_active_here_lists_only_unfinished_runs(runs: RunStore) -> None:
    done, live = runs.create("exec", {}), runs.create("exec", {})
    runs.finish(done, "failure", {})
    assert [r.id for r in runs.active_here()] == [live]
