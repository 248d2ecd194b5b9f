"""Shared fixtures: an isolated state directory per test, the shared image cache,
and the default image (built once, on first use, like a user's first run)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmrunner.config import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


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
