"""QEMU runs sandboxed: a scrubbed environment, ``-sandbox on`` (seccomp), and as the user
the ``qemu_user`` setting names (tests/vm/test_qemu_user.py for that user's confinement).
Checked on the live QEMU process of a real ``vmrunner exec`` (its /proc entry)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import vmrunner
from vmrunner.config import load_settings
from vmrunner.procs import VMM_ENV_KEEP, vmm_env
from vmrunner.vm.sandbox import resolve_qemu_user, sandbox_args

CANARY = "VMRUNNER_TEST_CANARY_TOKEN"


def test_sandbox_args() -> None:
    # snapshots migrate through a passed descriptor, and QEMU's user is set before exec
    # (never -runas): no new processes, no privilege changes, ever
    assert sandbox_args() == [
        "-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
    ]  # fmt: skip


@given(st.dictionaries(st.text(min_size=1), st.text()))
def test_vmm_env_keeps_only_path_home_and_locale(base: dict[str, str]) -> None:
    env = vmm_env(base)
    assert set(env) <= {"PATH", "HOME", *VMM_ENV_KEEP}
    assert env["PATH"].startswith("/usr/local/bin") and env["HOME"] == "/"
    assert all(env[k] == base[k] for k in VMM_ENV_KEEP if k in base)


def _qemu_pid(state_dir: Path) -> int | None:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"qemu-system" in cmdline.split(b"\0")[0] and str(state_dir).encode() in cmdline:
            return int(proc.name)
    return None


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


@pytest.mark.vm
@pytest.mark.usefixtures("debian_image")
@pytest.mark.parametrize("network", ["user", "none"])
def test_live_qemu_is_sandboxed_and_sees_no_secret(
    vm_env: dict[str, str], state_dir: Path, network: str
) -> None:
    if network == "user" and os.geteuid() != 0:
        pytest.skip("--network user needs root")
    cmd = [sys.executable, "-m", "vmrunner", "exec", "--accel", "tcg", "--quiet",
           "--network", network, "--", "sh", "-c", "echo running; sleep 120"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env={**vm_env, CANARY: "hunter2"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"running\n"
        pid = _qemu_pid(state_dir)
        assert pid is not None
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        status = _status(pid)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert b"hunter2" not in environ and CANARY.encode() not in environ
    assert {e.split(b"=")[0] for e in environ.split(b"\0") if e} <= {b"PATH", b"HOME", b"LANG",
                                                                       b"LC_ALL", b"TZ"}  # fmt: skip
    assert status["Seccomp"] == "2"  # filter mode: -sandbox on
    # QEMU runs as the qemu_user setting says (dropped before exec, never with -runas,
    # which would clear its parent-death signal: tests/vm/test_qemu_user.py)
    creds = resolve_qemu_user(load_settings(env=vm_env).qemu_user)
    assert int(status["Uid"].split()[0]) == (os.geteuid() if creds is None else creds.uid)
    assert vmrunner(["gc", "--json"], vm_env).returncode == 0
    assert _qemu_pid(state_dir) is None
