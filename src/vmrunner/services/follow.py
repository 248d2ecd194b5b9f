"""Following a run's live log, line by line, until the run ends.

``follow(services, run_id, job=None, start_line=0)`` yields ``(n, text)`` for each line
of the run's ``output`` log (or, with ``job``, of the first job log matching it), ``n``
counting from 1, ``text`` without its line break (decoded as UTF-8, bad bytes
replaced). It skips the first ``start_line`` lines (a client that saw up to line N
resumes with ``start_line=N``: no gap, no repeat). A line still being written is held
back until its line break arrives, or until the run ended. The iterator ends once the
run has a final status and the file is drained.

The file is polled every :data:`POLL_S`; the run's status is read at most every
:data:`STATUS_EVERY_S` and shared by every follower of that run in this process (50
followers of one run cost one status read per interval, not 50).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from vmrunner.errors import RunNotFoundError

POLL_S = 0.2
STATUS_EVERY_S = 0.5
CHUNK = 65536
_status: dict[tuple[int, str], tuple[float, bool]] = {}


async def _active(services: Any, run_id: str) -> bool:
    """Whether the run is still queued or running (read at most every STATUS_EVERY_S)."""
    key = (id(services), run_id)
    seen = _status.get(key)
    now = time.monotonic()
    if seen is not None and now - seen[0] < STATUS_EVERY_S:
        return seen[1]
    rec = await asyncio.to_thread(services.get, run_id)
    _status[key] = (time.monotonic(), rec.active)
    if len(_status) > 4096:  # forget old runs' entries
        for old in [k for k, (at, _a) in _status.items() if now - at > 60]:
            _status.pop(old, None)
    return bool(rec.active)


async def _log_path(services: Any, run_id: str, job: str | None) -> Path | None:
    """The log to follow; None while a job's log does not exist yet (the run is active)."""
    try:
        found = await asyncio.to_thread(services.log_files, run_id, job)
    except RunNotFoundError:
        if job is None or not await _active(services, run_id):
            raise
        return None
    return found[0][1] if found else None


async def follow(
    services: Any, run_id: str, job: str | None = None, start_line: int = 0
) -> AsyncIterator[tuple[int, str]]:
    """See the module's docstring. Raises ``RunNotFoundError`` for an unknown run, or a
    job matching no log of a finished run."""
    await asyncio.to_thread(services.get, run_id)  # unknown run: raise before any line
    path = await _log_path(services, run_id, job)
    while path is None:
        await asyncio.sleep(POLL_S)
        path = await _log_path(services, run_id, job)
    number, pending, offset = 0, b"", 0
    while True:
        ended = not await _active(services, run_id)  # read before draining: nothing is missed
        data = await asyncio.to_thread(_read_from, path, offset)
        offset += len(data)
        lines = (pending + data).split(b"\n")
        pending = lines.pop()
        if ended and not data and pending:
            lines.append(pending)
            pending = b""
        for raw in lines:
            number += 1
            if number > start_line:
                yield number, raw.decode("utf-8", "replace")
        if ended and not data:
            return
        if not data:
            await asyncio.sleep(POLL_S)


def _read_from(path: Path, offset: int) -> bytes:
    """Up to CHUNK bytes of ``path`` from ``offset`` (nothing when it does not exist)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(CHUNK)
    except FileNotFoundError:
        return b""
