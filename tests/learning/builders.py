"""Builders shared by the learning tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from vmrunner.learning import Observation

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def obs(command: str, *, exit_code: int = 0, minute: float = 0, **kw: Any) -> Observation:
    """An observation finishing ``minute`` minutes after ``T0``."""
    kw.setdefault("run_id", "run-1")
    kw.setdefault("duration_s", 1.0)
    return Observation(
        command=command, exit_code=exit_code, finished_at=T0 + timedelta(minutes=minute), **kw
    )
