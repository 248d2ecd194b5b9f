"""``concurrency`` groups shared by every vmrunner process that uses one state directory.

The pure state machine (:mod:`vmrunner.workflow.concurrency`) is kept as JSON in
``state_dir/concurrency/state.json`` and changed only under an exclusive ``fcntl`` lock
on a file beside it. The file also remembers which runs were cancelled (so that the
process running them notices) and the pid that owns each run, so that a run whose
process died is finished on its behalf the next time anyone looks.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Generic, Literal, TypeVar

from vmrunner.procs import pid_alive
from vmrunner.workflow.concurrency import ConcurrencyState, Group, admit, finish

Slot = Literal["running", "pending", "cancelled"]
T = TypeVar("T")


@dataclass
class _Data:
    state: ConcurrencyState
    cancelled: set[str]
    owners: dict[str, int]


def _load(path: Path) -> _Data:
    try:
        raw: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        raw = {}
    groups = {
        key: Group(g["running"], g.get("pending"), bool(g.get("cancelling")))
        for key, g in raw.get("groups", {}).items()
    }
    return _Data(
        ConcurrencyState(MappingProxyType(groups)), set(raw.get("cancelled", [])),
        {k: int(v) for k, v in raw.get("owners", {}).items()},
    )  # fmt: skip


def _save(path: Path, data: _Data) -> None:
    groups = {
        key: {"running": g.running, "pending": g.pending, "cancelling": g.cancelling}
        for key, g in data.state.groups.items()
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"groups": groups, "cancelled": sorted(data.cancelled), "owners": data.owners})
    )
    tmp.replace(path)


class ConcurrencyStore:
    """The groups of one state directory. Every method takes the lock for its duration."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "state.json"
        self.lock_path = directory / "lock"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[_Data]:
        with self.lock_path.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                data = _load(self.path)
                self._reap(data)
                yield data
                _save(self.path, data)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def _reap(data: _Data) -> None:
        dead = [run for run, pid in data.owners.items() if not pid_alive(pid)]
        for run in dead:
            for key in list(data.state.groups):
                data.state, _ = finish(data.state, key, run)
            data.owners.pop(run, None)
            data.cancelled.discard(run)

    def admit(self, group: str, run_id: str, cancel_in_progress: bool) -> Slot:
        """Enter ``run_id`` into ``group``; cancels what GitHub would (the older pending
        run, and the running one with ``cancel_in_progress``)."""
        with self._locked() as data:
            data.state, decision = admit(data.state, group, run_id, cancel_in_progress)
            data.owners[run_id] = os.getpid()
            data.cancelled.update(decision.cancelled)
            return "running" if decision.start_now else "pending"

    def slot(self, group: str, run_id: str) -> Slot:
        """Where ``run_id`` stands in ``group`` now."""
        with self._locked() as data:
            return self._slot(data, group, run_id)

    @staticmethod
    def _slot(data: _Data, group: str, run_id: str) -> Slot:
        if run_id in data.cancelled:
            return "cancelled"
        current = data.state.group(group)
        if current is not None and current.running == run_id:
            return "running"
        if current is not None and current.pending == run_id:
            return "pending"
        return "cancelled"

    def is_cancelled(self, run_id: str) -> bool:
        with self._locked() as data:
            return run_id in data.cancelled

    def release(self, group: str, run_id: str) -> None:
        """``run_id`` finished (or gave up waiting): frees its slot, promoting a pending run."""
        with self._locked() as data:
            data.state, _ = finish(data.state, group, run_id)
            data.cancelled.discard(run_id)
            if not any(run_id in (g.running, g.pending) for g in data.state.groups.values()):
                data.owners.pop(run_id, None)

    async def wait_turn(self, group: str, run_id: str, poll: float = 0.25) -> bool:
        """Wait until ``run_id`` runs in ``group``: True, or False when it was cancelled
        while pending (its slot is then released)."""
        while True:
            slot = await asyncio.to_thread(self.slot, group, run_id)
            if slot == "running":
                return True
            if slot == "cancelled":
                await asyncio.to_thread(self.release, group, run_id)
                return False
            await asyncio.sleep(poll)


@dataclass(frozen=True)
class GroupOutcome(Generic[T]):
    """How a run in a concurrency group ended: ``value`` when it ran to the end;
    ``cancelled`` "pending" (a newer run replaced it before it started) or "running"
    (cancel-in-progress cancelled it)."""

    value: T | None = None
    cancelled: Literal["pending", "running"] | None = None


async def run_in_group(
    store: ConcurrencyStore,
    group: str,
    holder: str,
    cancel_in_progress: bool,
    body: Callable[[], Awaitable[T]],
    *,
    on_pending: Callable[[], None] | None = None,
) -> GroupOutcome[T]:
    """Admit ``holder`` to ``group``, wait for its turn, run ``body`` and release the
    slot, however it ends. While ``body`` runs, a newer run's cancel-in-progress
    cancels it (``body`` sees ``CancelledError``). ``on_pending`` is called when the
    run has to wait. Ctrl-C (cancelling the caller) propagates, after the release."""
    try:
        slot = await asyncio.to_thread(store.admit, group, holder, cancel_in_progress)
        if slot == "pending" and on_pending is not None:
            on_pending()
        if not await store.wait_turn(group, holder):
            return GroupOutcome(cancelled="pending")
        task = asyncio.ensure_future(body())
        watcher = asyncio.ensure_future(_watch(store, holder, task))
        try:
            return GroupOutcome(value=await task)
        except asyncio.CancelledError:
            if not watcher.done() or watcher.cancelled():
                raise
            return GroupOutcome(cancelled="running")
        finally:
            watcher.cancel()
    finally:
        await asyncio.shield(asyncio.to_thread(store.release, group, holder))


async def _watch(store: ConcurrencyStore, holder: str, task: asyncio.Future[Any]) -> None:
    while not task.done():
        if await asyncio.to_thread(store.is_cancelled, holder):
            task.cancel()
            return
        await asyncio.sleep(0.5)
