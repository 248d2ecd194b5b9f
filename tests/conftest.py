"""Shared fixtures: an isolated state directory per test, the shared image cache,
and the default image (built once, on first use, like a user's first run)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from vmrunner.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir()
    return d


@pytest.fixture
def settings(state_dir: Path) -> Settings:
    return load_settings(env={**os.environ, "VMRUNNER_HOME": str(state_dir)})


@pytest.fixture
def vm_env(state_dir: Path) -> dict[str, str]:
    """The environment for a ``vmrunner`` subprocess: own state, shared image cache."""
    return {**os.environ, "VMRUNNER_HOME": str(state_dir)}


@pytest.fixture(scope="session")
def debian_image() -> Iterator[Path]:
    """Build (or find in the cache) the default image once per session."""
    settings = load_settings(env={k: v for k, v in os.environ.items() if k != "VMRUNNER_HOME"})
    proc = subprocess.run(
        [sys.executable, "-m", "vmrunner", "image", "build", "debian", "--json"],
        env={**os.environ, "VMRUNNER_CACHE": str(settings.cache_dir)},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr
    yield settings.images_dir


def vmrunner(
    args: list[str], env: dict[str, str], timeout: float = 300, **kw: object
) -> subprocess.CompletedProcess[bytes]:
    """Run the real ``vmrunner`` CLI in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "vmrunner", *args],
        env=env,
        capture_output=True,
        timeout=timeout,
        **kw,  # type: ignore[call-overload]
    )


def _initdb() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1] if found else None


class PgCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1 from Debian's postgresql package, that
    a test may stop and start again (the same port and data)."""

    def __init__(self) -> None:
        import shutil
        import socket
        import tempfile

        initdb = _initdb()
        if initdb is None:
            pytest.skip("no PostgreSQL: install Debian's postgresql or set VMRUNNER_TEST_PG_URL")
        self.bindir = initdb.parent
        self.data = Path(tempfile.mkdtemp(prefix="vmrunner-test-pg-"))  # postgres must reach it
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.data, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._ctl(str(initdb), "-D", str(self.data / "db"), "-A", "trust", "-U", "postgres")
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *argv: str) -> None:
        subprocess.run([*self.as_user, *argv], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        opts = f"-h 127.0.0.1 -p {self.port} -k {self.data}"
        self._ctl(str(self.bindir / "pg_ctl"), "-D", str(self.data / "db"), "-o", opts,
                  "-l", str(self.data / "log"), "-w", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._ctl(
            str(self.bindir / "pg_ctl"), "-D", str(self.data / "db"), "-m", mode, "-w", "stop"
        )

    def remove(self) -> None:
        import shutil

        subprocess.run([*self.as_user, str(self.bindir / "pg_ctl"), "-D", str(self.data / "db"),
                        "-m", "immediate", "stop"], capture_output=True, timeout=120)  # fmt: skip
        shutil.rmtree(self.data, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A real PostgreSQL server for the session: ``VMRUNNER_TEST_PG_URL`` if set, else a
    throwaway cluster on 127.0.0.1 started from Debian's postgresql package (skipped,
    saying why, only when neither is available)."""
    url = os.environ.get("VMRUNNER_TEST_PG_URL")
    if url:
        yield url
        return
    cluster = PgCluster()
    try:
        yield cluster.url
    finally:
        cluster.remove()


@pytest.fixture
def pg_cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of this test's own, which it may restart."""
    cluster = PgCluster()
    try:
        yield cluster
    finally:
        cluster.remove()


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
def db_url_pg(pg_url: str) -> Iterator[str]:
    """A URL of an empty schema on the suite's real PostgreSQL server."""
    yield from _pg_schema_url(pg_url)


def concurrency_groups(state_dir: Path) -> dict[str, dict[str, Any]]:
    """The busy concurrency groups in the state directory's SQLite store, as
    ``{folded name: {"running": id, "pending": id or None}}`` (empty before any)."""
    import sqlite3

    db = state_dir / "vmrunner.db"
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            rows = conn.execute("SELECT name, running, pending FROM concurrency_groups").fetchall()
    except sqlite3.OperationalError:  # not migrated yet
        return {}
    return {name: {"running": running, "pending": pending} for name, running, pending in rows}


def git_repo(root: Path, files: dict[str, str]) -> Path:
    """A git repository at ``root`` with ``files`` (path: text) in one commit on ``main``."""
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "c"]):  # fmt: skip
        subprocess.run(["git", "-C", str(root), *argv], check=True)
    return root


# The fake GitHub (tests/github/fake.py): its fixtures, for every directory's tests.
from github.conftest import github_app_key, github_fake  # noqa: E402

__all__ = ["PgCluster", "git_repo", "github_app_key", "github_fake", "vmrunner"]
