"""The store's connection: one engine, one migration tree, transactions with retry.

Every table vmrunner keeps (runs, their logs, concurrency groups, learning) lives in one
database and one alembic tree (``store/migrations``).

``open_store(url)`` connects to SQLite (a file; the parent directory is created) or
PostgreSQL (``postgresql://`` URLs use the psycopg 3 driver), brings the schema to
the newest alembic revision, and returns a ``Store``.

Concurrency contract: several processes may record into one database at once and
nothing is lost.

* SQLite runs in WAL mode (readers never block the writer) with a busy timeout;
  every write transaction starts with ``BEGIN IMMEDIATE``, so two writers queue up
  instead of failing on a lock upgrade.
* PostgreSQL relies on row locks and ``INSERT … ON CONFLICT`` upserts; writers sort
  their keys so that lock order is the same everywhere.
* A write that still fails on a lock, a deadlock or a serialisation conflict is
  retried as a whole (``Store.write``) with growing, jittered back-off; after
  ``retries`` attempts, or on any other database error, ``StoreError`` is raised.

Migrations run at open under a lock (``BEGIN IMMEDIATE`` on SQLite, an advisory
transaction lock on PostgreSQL), so two processes opening a new database at once
migrate it exactly once. This module does not know the schema's meaning.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from vmrunner.errors import StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")
# The version table keeps the name it had when the tree held only the learning schema,
# so databases made by earlier versions migrate in place.
VERSION_TABLE = "learn_alembic_version"
_MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_KEY = 0x766D726C  # "vmrl": serialises concurrent migrations
_RETRY_SQLSTATES = frozenset({"40001", "40P01", "55P03"})
_WRITE = "vmrunner_write"


def resolve_url(url: str) -> URL:
    """``url`` parsed, with bare PostgreSQL URLs pointed at the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise StoreError(f"invalid database URL {url!r}: {exc}") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _private_file(path: Path) -> None:
    """Create the database file 0600 (SQLite gives its journal and WAL files the same
    mode), its directory 0700 when new; an existing file of ours is tightened to 0600."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    if path.stat().st_uid == os.geteuid():
        path.chmod(0o600)


def _sqlite_engine(url: URL, busy_timeout_s: float) -> Engine:
    if url.database and url.database != ":memory:":
        _private_file(Path(url.database).expanduser())
        engine = create_engine(url, connect_args={"timeout": busy_timeout_s})
    else:
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA wal_autocheckpoint = 8192")
        cur.execute("PRAGMA cache_size = -65536")
        cur.execute("PRAGMA temp_store = MEMORY")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _is_retryable(exc: DBAPIError) -> bool:
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in _RETRY_SQLSTATES:
        return True
    message = str(exc.orig).lower()
    return isinstance(exc, OperationalError) and ("locked" in message or "busy" in message)


class Store:
    """An open learning database. ``read()`` and ``write()`` are the only ways in."""

    def __init__(self, engine: Engine, *, retries: int = 12) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.retries = retries

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for reading (a plain transaction, rolled back at the end)."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"store read failed: {exc}") from exc

    def write(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` in one write transaction, retrying the whole of it on lock conflicts.

        ``fn`` must be safe to call again after a rollback (no side effects outside
        the connection). Raises ``StoreError`` when retries run out or on other errors.
        """
        delay = 0.02
        for attempt in range(1, self.retries + 1):
            try:
                conn_cm = self.engine.connect().execution_options(**{_WRITE: True})
                with conn_cm as conn, conn.begin():
                    return fn(conn)
            except DBAPIError as exc:
                if not _is_retryable(exc) or attempt == self.retries:
                    raise StoreError(f"store write failed: {exc}") from exc
                log.info("store busy, retrying", extra={"attempt": attempt})
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)
            except SQLAlchemyError as exc:
                raise StoreError(f"store write failed: {exc}") from exc
        raise StoreError("store write failed: retries exhausted")  # pragma: no cover

    def close(self) -> None:
        """Close every pooled connection (idempotent)."""
        self.engine.dispose()


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


def migrate(store: Store) -> str | None:
    """Bring the schema to the newest revision (no-op when current); returns the revision."""
    cfg = _alembic_config()
    head = ScriptDirectory.from_config(cfg).get_current_head()

    def upgrade(conn: Connection) -> str | None:
        if store.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        if ctx.get_current_revision() != head:
            log.info("migrating the store schema", extra={"to": head})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        return head

    return store.write(upgrade)


def open_store(url: str, *, busy_timeout_s: float = 30.0, retries: int = 12) -> Store:
    """Connect to ``url``, migrate it to the newest schema, and return the store.

    Raises ``StoreError`` when the database cannot be reached, its driver is missing
    (PostgreSQL needs ``psycopg``), or a migration fails.
    """
    parsed = resolve_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = _sqlite_engine(parsed, busy_timeout_s)
        else:
            engine = create_engine(parsed, pool_pre_ping=True)
    except (ImportError, OSError, SQLAlchemyError) as exc:
        raise StoreError(f"cannot open the store {parsed!r}: {exc}") from exc
    store = Store(engine, retries=retries)
    try:
        migrate(store)
    except BaseException:
        store.close()
        raise
    return store
