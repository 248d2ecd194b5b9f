"""``run_in_group``: admission, waiting, cancel-in-progress and release, with real
stores (a locked state file) and real asyncio tasks."""

from __future__ import annotations

import asyncio
from pathlib import Path

from vmrunner.store.concurrency import ConcurrencyStore, GroupOutcome, run_in_group
from vmrunner.store.engine import open_store

from .test_engine import _run


async def _until(pred: object, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():  # type: ignore[operator]
        assert loop.time() < deadline, "condition never held"
        await asyncio.sleep(0.02)


def test_newer_pending_run_replaces_the_older_and_runs_after_the_first(tmp_path: Path) -> None:
    store = ConcurrencyStore(open_store(f"sqlite:///{tmp_path}/store.db"))
    order: list[str] = []
    gate = asyncio.Event()

    async def first() -> str:
        order.append("first started")
        await gate.wait()
        order.append("first done")
        return "one"

    async def never() -> str:
        order.append("second started")
        return "two"

    async def third() -> str:
        order.append("third started")
        return "three"

    async def main() -> list[GroupOutcome[str]]:
        waits: list[str] = []
        t1 = asyncio.ensure_future(run_in_group(store, "g", "r1", False, first))
        await _until(lambda: order == ["first started"])
        t2 = asyncio.ensure_future(
            run_in_group(store, "g", "r2", False, never, on_pending=lambda: waits.append("r2"))
        )
        await _until(lambda: waits == ["r2"])
        t3 = asyncio.ensure_future(run_in_group(store, "g", "r3", False, third))
        out2 = await t2  # replaced while it waited
        assert order == ["first started"]
        gate.set()
        return [await t1, out2, await t3]

    one, two, three = asyncio.run(main())
    assert one == GroupOutcome(value="one")
    assert two == GroupOutcome(cancelled="pending")
    assert three == GroupOutcome(value="three")
    assert order == ["first started", "first done", "third started"]
    assert store.slot("g", "r3") == "cancelled"  # released: the group is empty again
    assert store.admit("g", "r4", False) == "running"


def test_cancel_in_progress_cancels_the_running_body(tmp_path: Path) -> None:
    store = ConcurrencyStore(open_store(f"sqlite:///{tmp_path}/store.db"))
    seen: list[str] = []

    async def long() -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            seen.append("cancelled inside")
            raise
        return "finished"

    async def newer() -> str:
        return "newer"

    async def main() -> tuple[GroupOutcome[str], GroupOutcome[str]]:
        t1 = asyncio.ensure_future(run_in_group(store, "g", "old", False, long))
        await _until(lambda: store.slot("g", "old") == "running")
        t2 = asyncio.ensure_future(run_in_group(store, "g", "new", True, newer))
        return await t1, await t2

    old, new = asyncio.run(main())
    assert old == GroupOutcome(cancelled="running")
    assert new == GroupOutcome(value="newer")
    assert seen == ["cancelled inside"]


def test_interrupting_a_waiting_run_frees_its_slot(tmp_path: Path) -> None:
    store = ConcurrencyStore(open_store(f"sqlite:///{tmp_path}/store.db"))

    async def main() -> None:
        gate = asyncio.Event()

        async def hold() -> None:
            await gate.wait()

        t1 = asyncio.ensure_future(run_in_group(store, "g", "r1", False, hold))
        await _until(lambda: store.slot("g", "r1") == "running")
        t2 = asyncio.ensure_future(run_in_group(store, "g", "r2", False, hold))
        await _until(lambda: store.slot("g", "r2") == "pending")
        t2.cancel()  # Ctrl-C while waiting
        try:
            await t2
        except asyncio.CancelledError:
            pass
        assert store.slot("g", "r2") == "cancelled"
        gate.set()
        await t1

    asyncio.run(main())
    assert store.admit("g", "r3", False) == "running"


def test_job_level_cancel_in_progress_cancels_the_running_job(tmp_path: Path) -> None:
    wf = """
    on: push
    jobs:
      long:
        runs-on: ubuntu-latest
        concurrency: {group: deploy, cancel-in-progress: true}
        steps:
          - run: sleep 5  # the fake guest cannot stop it: asyncio.run waits for it
      quick:
        runs-on: ubuntu-latest
        steps:
          - run: sleep 1
      later:
        needs: quick
        runs-on: ubuntu-latest
        concurrency: {group: deploy, cancel-in-progress: true}
        steps:
          - run: echo later
    """
    _env, summaries = _run(tmp_path, wf)
    assert summaries["long"].result == "cancelled"
    assert summaries["later"].result == "success"
