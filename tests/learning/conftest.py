"""Fixtures for the learning tests: stores on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from vmrunner.learning import LearningService


def _pg_schema_url(PG_URL: str) -> Iterator[str]:
    """A fresh schema on the PostgreSQL server, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'learn.db'}"
        return
    # a real server: VMRUNNER_TEST_PG_URL, or a throwaway cluster (tests/conftest.py)
    yield from _pg_schema_url(request.getfixturevalue("pg_url"))


@pytest.fixture
def service(db_url: str) -> Iterator[LearningService]:
    svc = LearningService.open(db_url)
    try:
        yield svc
    finally:
        svc.close()
