"""Fixtures for the learning tests: stores on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vmrunner.learning.service import LearningService


@pytest.fixture
def service(db_url: str) -> Iterator[LearningService]:
    svc = LearningService.open(db_url)
    try:
        yield svc
    finally:
        svc.close()
