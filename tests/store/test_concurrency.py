"""Concurrency groups in the store, shared by separate processes on SQLite and on the
suite's real PostgreSQL (as two hosts would share one database): one running, the
newest pending, an older pending cancelled, cancel-in-progress, and a holder whose
process was killed freed by the next look."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vmrunner.store.concurrency import ConcurrencyStore
from vmrunner.store.engine import open_store

WORKER = Path(__file__).with_name("group_worker.py")


def _start(url: str, holder: str, gate: Path, cip: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), url, "Build-Main", holder, "1" if cip else "0", str(gate)],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip


def _expect(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdout is not None
    got = proc.stdout.readline().strip()
    assert got == line, f"expected {line!r}, got {got!r}"


def _finish(proc: subprocess.Popen[str]) -> str:
    """The last line the worker prints (read through the same buffered pipe as
    ``_expect``, so nothing it already buffered is lost)."""
    assert proc.stdout is not None
    rest = proc.stdout.read()
    proc.wait(timeout=60)
    return rest.strip().splitlines()[-1]


def test_three_processes_one_running_newest_pending_older_cancelled(
    db_url: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    first = _start(db_url, "r1", gate)
    _expect(first, "started")
    second = _start(db_url, "r2", gate)
    _expect(second, "pending")
    third = _start(db_url, "r3", gate)  # group names ignore case: "Build-Main" everywhere
    _expect(third, "pending")
    assert _finish(second) == "cancelled pending"  # replaced while it waited
    assert first.poll() is None
    gate.touch()
    assert _finish(first) == "ran"
    _expect(third, "started")
    assert _finish(third) == "ran"
    assert ConcurrencyStore(open_store(db_url)).groups() == {}


def test_cancel_in_progress_from_another_process_stops_the_running_body(
    db_url: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    first = _start(db_url, "a", gate)
    _expect(first, "started")
    second = _start(db_url, "b", gate, cip=True)
    _expect(second, "pending")
    assert _finish(first) == "cancelled running"
    _expect(second, "started")
    gate.touch()
    assert _finish(second) == "ran"


def test_a_killed_holder_is_freed_by_the_next_look(db_url: str, tmp_path: Path) -> None:
    first = _start(db_url, "dead", tmp_path / "never")
    _expect(first, "started")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    store = ConcurrencyStore(open_store(db_url))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and store.admit("build-main", "next", False) != "running":
        store.release("build-main", "next")
        time.sleep(0.1)
    assert store.slot("build-main", "next") == "running"


@pytest.mark.parametrize("cip", [False, True])
def test_admit_in_one_process_is_seen_by_another(db_url: str, cip: bool) -> None:
    mine, theirs = ConcurrencyStore(open_store(db_url)), ConcurrencyStore(open_store(db_url))
    assert mine.admit("g", "x", False) == "running"
    assert theirs.admit("G", "y", cip) == "pending"
    assert mine.is_cancelled("x") is cip
    mine.release("g", "x")
    assert theirs.slot("g", "y") == "running"
