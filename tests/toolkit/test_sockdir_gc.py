"""``vmrunner gc`` and the toolkit's socket directories: a run process killed with -9
leaves its service socket's directory (and a tool-cache copy-out) behind; gc removes
them, and never those of a live process."""

from __future__ import annotations

import dataclasses
import os
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from vmrunner.config import Settings
from vmrunner.services.machines import gc
from vmrunner.toolkit.sockdir import SocketDirError, new_socket_dir, sockets_parent
from vmrunner.vm.records import reap_record

# A run's toolkit as the engine starts it (its service socket's directory), and a
# tool-cache copy-out in progress; prints both directories, then waits to be killed.
CHILD = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from vmrunner.toolkit.run import run_toolkit
    from vmrunner.toolkit.service import Identity
    from vmrunner.runner.tool_cache import ToolCache

    async def main():
        async with run_toolkit(Path(sys.argv[1]), Path(sys.argv[2]), Identity("o/r", "refs/heads/main")) as tk:
            staged = ToolCache(Path(sys.argv[2]) / "tool-cache", 1).store("debian").staging()
            print(tk.service.socket_path.parent, staged, flush=True)
            await asyncio.sleep(600)

    asyncio.run(main())
""")


def _start(tmp_path: Path, name: str, cache: Path) -> tuple[subprocess.Popen[str], list[Path]]:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / name), str(cache)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"the child exited with {proc.wait(30)}"
    return proc, [Path(p) for p in line.split()]


def test_gc_removes_a_killed_runs_socket_dirs_and_keeps_a_live_ones(
    settings: Settings, tmp_path: Path
) -> None:
    settings = dataclasses.replace(settings, cache_dir=tmp_path / "cache")  # its own
    killed, dead_dirs = _start(tmp_path, "run-killed", settings.cache_dir)
    live, live_dirs = _start(tmp_path, "run-live", settings.cache_dir)
    mine = new_socket_dir("run")  # this process's own: live too
    try:
        for d in (dead_dirs[0], live_dirs[0]):
            assert d.parent == sockets_parent() and stat.S_IMODE(d.stat().st_mode) == 0o700
            assert (d / "toolkit.sock").is_socket()
        os.kill(killed.pid, signal.SIGKILL)
        assert killed.wait(30) == -signal.SIGKILL
        report = gc(settings)
        assert str(dead_dirs[0]) in report.vm_dirs and str(dead_dirs[1]) in report.tmp_dirs
        assert not any(d.exists() for d in dead_dirs)
        assert all(d.is_dir() for d in live_dirs) and mine.path.is_dir()
        assert (live_dirs[0] / "toolkit.sock").is_socket()
    finally:
        live.terminate()
        live.wait(30)
        killed.wait(30)
        reap_record(mine)
    gc(settings)  # terminated without cleaning up: now its directories are debris
    assert not any(d.exists() for d in live_dirs)


@pytest.mark.parametrize("kind", ["open to others", "symlink"])
def test_a_parent_dir_that_is_not_ours_alone_is_refused(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    parent = sockets_parent()
    if kind == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        parent.symlink_to(tmp_path / "elsewhere")
    else:
        parent.mkdir()
        parent.chmod(0o777)
    with pytest.raises(SocketDirError, match="mode 0700"):
        new_socket_dir("run")
    assert not any((tmp_path / "elsewhere").glob("*")) and not any(parent.glob("*"))
