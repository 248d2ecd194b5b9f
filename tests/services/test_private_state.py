"""The state directory is private (0700, its database and run files 0600), and gc removes
the scratch directory of a job whose run was killed (it holds unmasked files)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

from vmrunner.config import load_settings
from vmrunner.services.core import Services
from vmrunner.services.machines import gc
from vmrunner.vm.records import new_record_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_dir_database_and_run_files_are_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)  # made by an older vmrunner: tightened
    state.chmod(0o755)
    settings = load_settings(env={"VMRUNNER_HOME": str(state), "HOME": str(tmp_path)})
    old = os.umask(0o022)
    try:
        with Services(settings) as services:
            services.reap_interrupted()
            handle = services.accept("exec", {"argv": ["true"]}, title="true")
            settings.ensure_dirs()
    finally:
        os.umask(old)
    assert _mode(state) == 0o700
    assert _mode(settings.vms_dir) == 0o700
    assert _mode(state / "vmrunner.db") == 0o600
    assert _mode(handle.dir) == 0o700
    assert _mode(handle.output_log) == 0o600


KILLED_JOB = """
import sys, time
from pathlib import Path
from vmrunner.vm.records import new_record_dir
work = new_record_dir(Path(sys.argv[1]), "build").path
(work / "env-file").write_text("TOKEN=unmasked")
print(work, flush=True)
time.sleep(600)
"""


def test_gc_removes_the_scratch_of_a_killed_job_and_keeps_a_live_ones(tmp_path: Path) -> None:
    settings = load_settings(env={"VMRUNNER_HOME": str(tmp_path / "state")})
    work = settings.state_dir / "runs" / "7" / "work"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED_JOB), str(work)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    killed = Path(proc.stdout.readline().decode().strip())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    live = new_record_dir(work, "test").path  # this process owns it: still running
    assert (killed / "env-file").is_file()
    report = gc(settings)
    assert not killed.exists() and str(killed) in report.vm_dirs
    assert live.is_dir()
