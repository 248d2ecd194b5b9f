"""The store: migrations, the schema they build, retries and concurrent writers."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, func, select, text

from vmrunner.errors import StoreError
from vmrunner.learning import models
from vmrunner.learning.service import LearningService
from vmrunner.learning.store import VERSION_TABLE, migrate, open_store, resolve_url
from vmrunner.store import models as run_models

from .builders import obs


def test_migrations_build_exactly_the_models(db_url: str) -> None:
    store = open_store(db_url)
    try:
        with store.read() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
            combined = MetaData()  # one migration tree: learning and runs
            for table in (*models.metadata.tables.values(), *run_models.metadata.tables.values()):
                table.to_metadata(combined)
            diff = [d for d in compare_metadata(ctx, combined) if "alembic" not in str(d)]
            assert diff == []
            assert ctx.get_current_revision() == "0005"
    finally:
        store.close()


def test_open_twice_is_a_no_op(db_url: str) -> None:
    for _ in range(2):
        store = open_store(db_url)
        assert migrate(store) == "0005"
        store.close()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'deep' / 'dir' / 'l.db'}")
    with store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    store.close()


def test_bare_postgresql_urls_use_psycopg() -> None:
    assert resolve_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert resolve_url("sqlite:///x.db").drivername == "sqlite"


def test_bad_url_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="invalid database URL"):
        open_store("not a url")


def test_unreachable_database_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        open_store(f"sqlite:///{tmp_path}")  # a directory, not a file


def test_write_retries_on_lock_then_succeeds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    store = open_store(url, busy_timeout_s=0.02)
    holder = open_store(url).engine.connect().execution_options(vmrunner_write=True)
    holder.begin()  # BEGIN IMMEDIATE: holds the write lock
    release = threading.Timer(0.3, holder.rollback)
    release.start()
    started = time.monotonic()
    try:
        assert store.write(lambda conn: conn.execute(text("SELECT 7")).scalar()) == 7
        assert time.monotonic() - started >= 0.25
    finally:
        release.join()
        holder.close()
        store.close()


def test_write_gives_up_with_store_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    store = open_store(url, busy_timeout_s=0.01, retries=2)
    holder = open_store(url).engine.connect().execution_options(vmrunner_write=True)
    holder.begin()
    try:
        with pytest.raises(StoreError, match="write failed"):
            store.write(lambda conn: conn.execute(text("SELECT 1")))
    finally:
        holder.rollback()
        holder.close()
        store.close()


def _writer(url: str, worker: int, batches: int, per_batch: int) -> None:
    svc = LearningService.open(url)
    try:
        for b in range(batches):
            svc.record(
                obs(
                    "pytest" if i % 3 else f"pip install foo=={b}.{i}",
                    exit_code=i % 5 == 0,
                    run_id=f"w{worker}-b{b}",
                    job="test",
                    step=i,
                    repo="acme/app",
                    commit=f"c{b % 4}",
                    prev_command="make" if i else None,
                    output=f"E   ModuleNotFoundError: No module named 'm{i}'",
                    minute=b + i / 100,
                )
                for i in range(per_batch)
            )
    finally:
        svc.close()


def test_two_processes_recording_at_once_lose_nothing(db_url: str) -> None:
    LearningService.open(db_url).close()  # migrate first, as vmrunner does at start
    ctx = multiprocessing.get_context("spawn")
    batches, per_batch = 30, 20
    procs = [ctx.Process(target=_writer, args=(db_url, w, batches, per_batch)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    expected = 2 * batches * per_batch
    store = open_store(db_url)
    try:
        with store.read() as conn:
            count = conn.execute(select(func.count()).select_from(models.observations)).scalar()
            c = models.cmd_stats
            agg = conn.execute(select(func.sum(c.c.n)).where(c.c.repo == "*")).scalar()
            s = models.signatures
            sig_n = conn.execute(select(func.sum(s.c.n))).scalar()
            fails = conn.execute(
                select(func.count())
                .select_from(models.observations)
                .where(models.observations.c.ok.is_(False))
            ).scalar()
            sigs = conn.execute(select(func.count()).select_from(s)).scalar()
        assert count == expected
        assert agg == expected
        assert sig_n == fails
        assert sigs == 1  # 'No module named <*>' clustered across both writers
    finally:
        store.close()
