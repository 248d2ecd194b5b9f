"""QEMU runs as the unprivileged ``qemu_user`` (``vmrunner-qemu``, made by bootstrap) when
vmrunner runs as root, and still dies with vmrunner after ``kill -9``.

The drop happens between fork and exec: network namespace, then groups, gid, uid, and only
then the parent-death signal (the kernel clears it on a change of credentials, which is
why ``-runas`` was reverted). QEMU opens no path of its own: everything is a descriptor.
Checked on live processes: their /proc entries, a user that cannot reach the state
directory (``setpriv``), an exec end to end, a snapshot saved and restored, ``kill -9``.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import vmrunner
from vmrunner.config import Settings, load_settings
from vmrunner.errors import ConfigError
from vmrunner.procs import pid_alive
from vmrunner.services.machines import image_cache
from vmrunner.vm import sandbox
from vmrunner.vm.machine import Accel, MachineSpec
from vmrunner.vm.qemu import QemuMachine

USER = sandbox.DEFAULT_QEMU_USER
TCG = ["exec", "--accel", "tcg", "--memory", "512"]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
GONE_WITHIN_S = 15.0  # a bound for the kernel's SIGKILL to land, not a measurement


def _nobody() -> sandbox.Credentials:
    pw = pwd.getpwnam("nobody")
    return sandbox.Credentials("nobody", pw.pw_uid, pw.pw_gid, (pw.pw_gid,))


# -- the setting ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "euid", "expected"),
    [
        ("", 0, None),  # QEMU runs as vmrunner's user
        ("self", 0, None),
        ("auto", 1000, None),  # a non-root vmrunner gains nothing from dropping
        ("nobody", 0, "nobody"),
        ("nobody", pwd.getpwnam("nobody").pw_uid, None),  # already that user
        ("nobody", 1000, ConfigError),  # could not switch to it
        ("no-such-user-vmr", 0, ConfigError),
    ],
)
def test_resolve_qemu_user(setting: str, euid: int, expected: str | type | None) -> None:
    if expected is ConfigError:
        with pytest.raises(ConfigError, match="qemu_user"):
            sandbox.resolve_qemu_user(setting, euid)
        return
    creds = sandbox.resolve_qemu_user(setting, euid)
    assert (creds.name if creds else None) == expected
    if creds is not None:
        pw = pwd.getpwnam(setting)
        assert (creds.uid, creds.gid) == (pw.pw_uid, pw.pw_gid)
        assert set(creds.groups) == set(os.getgrouplist(setting, pw.pw_gid))


@needs_root
def test_bootstrap_made_the_qemu_user_and_auto_picks_it() -> None:
    creds = sandbox.resolve_qemu_user("auto", 0)
    assert creds is not None, "scripts/bootstrap.sh creates the vmrunner-qemu user"
    assert creds.name == USER and creds.uid != 0 and 0 not in creds.groups
    assert pwd.getpwnam(USER).pw_shell.endswith("nologin")


def test_the_setting_comes_from_the_file_and_the_environment(tmp_path: Path) -> None:
    env = {"VMRUNNER_HOME": str(tmp_path), "VMRUNNER_CONFIG": str(tmp_path / "c.toml")}
    assert load_settings(env=env).qemu_user in ("", "auto")
    (tmp_path / "c.toml").write_text('qemu_user = "nobody"\n')
    assert load_settings(env=env).qemu_user == "nobody"
    assert load_settings(env={**env, "VMRUNNER_QEMU_USER": "self"}).qemu_user == "self"


# -- the drop and the parent-death signal, on a plain process ---------------------------------
PARENT = """
import asyncio, json, sys
from pathlib import Path
from vmrunner.procs import spawn_vmm
from vmrunner.vm import sandbox
creds = sandbox.Credentials(*json.loads(sys.argv[1]))
async def main():
    setup = sandbox.vmm_child_setup(1 << 20, creds)
    proc = await spawn_vmm(["sleep", "300"], log=Path(sys.argv[2]), preexec=setup)
    print(proc.pid, flush=True)
    await asyncio.sleep(300)
asyncio.run(main())
"""
# The same, but with the parent-death signal set BEFORE the drop (what -runas amounted to).
WRONG_ORDER = """
import ctypes, json, signal, subprocess, sys, time
from vmrunner.vm import sandbox
creds = sandbox.Credentials(*json.loads(sys.argv[1]))
def setup():
    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    sandbox.drop_to(creds)
proc = subprocess.Popen(["sleep", "300"], preexec_fn=setup, start_new_session=True)
print(proc.pid, flush=True)
time.sleep(300)
"""


def _parent(
    script: str, who: sandbox.Credentials, log: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``script`` (a vmrunner-like parent of one dropped child); it and the child's pid."""
    args = json.dumps([who.name, who.uid, who.gid, list(who.groups)])
    parent = subprocess.Popen([sys.executable, "-c", script, args, str(log)],
                              stdout=subprocess.PIPE, start_new_session=True)  # fmt: skip
    assert parent.stdout is not None
    return parent, int(parent.stdout.readline())


def _pid_gone(pid: int) -> bool:
    deadline = time.monotonic() + GONE_WITHIN_S
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not pid_alive(pid)


def _status(pid: int) -> dict[str, list[str]]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.split() for k, _, v in (line.partition(":") for line in lines)}


@needs_root
def test_a_dropped_child_still_dies_with_its_parent_after_kill_9(tmp_path: Path) -> None:
    who = _nobody()
    parent, child = _parent(PARENT, who, tmp_path / "log")
    try:
        status = _status(child)
        assert status["Uid"] == [str(who.uid)] * 4 and status["Gid"] == [str(who.gid)] * 4
        assert status["Groups"] == [str(who.gid)]
        parent.kill()
        parent.wait()
        assert _pid_gone(child), "the dropped child outlived vmrunner's kill -9"
    finally:
        if pid_alive(child):
            os.kill(child, signal.SIGKILL)


@needs_root
def test_the_signal_set_before_the_drop_is_lost(tmp_path: Path) -> None:
    """Why the order matters (the reverted ``-runas`` did the drop after it): the same
    child, signal first and credentials after, survives its parent's death."""
    who = _nobody()
    parent, child = _parent(WRONG_ORDER, who, tmp_path / "log")
    try:
        assert _status(child)["Uid"][0] == str(who.uid)
        parent.kill()
        parent.wait()
        time.sleep(1.0)  # room for a signal that is not coming; the check is below
        assert pid_alive(child), "the kernel kept the parent-death signal across setresuid?"
    finally:
        os.kill(child, signal.SIGKILL)


# -- live QEMU -----------------------------------------------------------------------------------
@pytest.fixture
def user_env(vm_env: dict[str, str]) -> dict[str, str]:
    if os.geteuid() != 0:
        pytest.skip("QEMU runs as another user only when vmrunner runs as root")
    return {**vm_env, "VMRUNNER_QEMU_USER": USER}


def _vmm_pids(state_dir: Path) -> list[int]:
    """The live QEMU pids recorded in this state directory's VM records."""
    pids = []
    for owner in (state_dir / "vms").glob("*/owner.json"):
        try:
            pid = json.loads(owner.read_text()).get("vmm_pid")
        except (OSError, ValueError):
            continue
        if pid and pid_alive(pid):
            pids.append(int(pid))
    return pids


def _wait_for(probe: Callable[[], list[int]], within: float = 300.0) -> list[int]:
    deadline = time.monotonic() + within
    while not (found := probe()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "vmrunner", "-v", *TCG, *args, "--", "sh", "-c",
           "echo running; sleep 300"]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)  # fmt: skip


@pytest.fixture
def reaped() -> Iterator[list[subprocess.Popen[bytes]]]:
    """vmrunner processes a test starts; killed and reaped (by pid) whatever happens."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def _as_user(argv: list[str]) -> subprocess.CompletedProcess[bytes]:
    pw = pwd.getpwnam(USER)
    return subprocess.run(
        ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", *argv],
        capture_output=True, timeout=30,
    )  # fmt: skip


@pytest.mark.vm
@pytest.mark.usefixtures("debian_image")
def test_exec_runs_qemu_as_the_qemu_user_who_cannot_reach_the_state(
    user_env: dict[str, str], state_dir: Path, reaped: list[subprocess.Popen[bytes]]
) -> None:
    proc = _start(user_env)
    reaped.append(proc)
    assert proc.stdout is not None and proc.stdout.readline() == b"running\n"
    [pid] = _vmm_pids(state_dir)
    status = _status(pid)
    pw = pwd.getpwnam(USER)
    assert status["Uid"] == [str(pw.pw_uid)] * 4 and status["Gid"] == [str(pw.pw_gid)] * 4
    assert sorted(status["Groups"]) == sorted(str(g) for g in os.getgrouplist(USER, pw.pw_gid))
    assert status["Seccomp"] == ["2"] and status["CapEff"] == ["0" * 16]
    [vmdir] = (state_dir / "vms").iterdir()
    assert state_dir.stat().st_mode & 0o777 == 0o700
    secret = vmdir / "secret"  # a 0600 file of vmrunner's, like the database
    secret.write_bytes(b"s3cr3t")
    secret.chmod(0o600)
    for path in (secret, vmdir / "overlay.qcow2"):  # and the guest's disk, which QEMU writes
        denied = _as_user(["head", "-c1", str(path)])
        assert denied.returncode != 0 and b"Permission denied" in denied.stderr, path
    assert _as_user(["ls", str(state_dir)]).returncode != 0
    assert _as_user(["true"]).returncode == 0  # the denial is the directory's, not setpriv's
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"{USER} (uid {pw.pw_uid})".encode() in err  # the -v log says who QEMU ran as
    assert _vmm_pids(state_dir) == []


@pytest.mark.vm
@pytest.mark.usefixtures("debian_image")
@pytest.mark.parametrize("when", ["during boot", "after boot"])
def test_kill_9_of_vmrunner_leaves_no_qemu_running_as_the_user(
    user_env: dict[str, str], state_dir: Path, reaped: list[subprocess.Popen[bytes]], when: str
) -> None:
    proc = _start(user_env, "--no-snapshot")
    reaped.append(proc)
    uid = str(pwd.getpwnam(USER).pw_uid)

    def dropped() -> list[int]:  # QEMU exists and has dropped: the signal is (re)set
        return [p for p in _vmm_pids(state_dir) if _status(p)["Uid"][0] == uid]

    if when == "after boot":
        assert proc.stdout is not None and proc.stdout.readline() == b"running\n"
    pids = _wait_for(dropped)
    assert pids, "QEMU never ran as the qemu user"
    if when == "during boot":  # the guest has not run the command yet
        assert proc.poll() is None and select.select([proc.stdout], [], [], 0)[0] == []
    proc.kill()
    proc.wait()
    assert all(_pid_gone(p) for p in pids), "QEMU outlived vmrunner's kill -9"
    gc = vmrunner(["gc", "--json"], user_env)
    assert gc.returncode == 0, gc.stderr
    assert list((state_dir / "vms").iterdir()) == []


def _machine(settings: Settings, snapshots: Path) -> QemuMachine:
    image = image_cache(settings).ensure("debian", lambda _m: None)
    spec = MachineSpec(image=image, accel=Accel.TCG, memory_mib=512, qemu_user=USER)
    return QemuMachine(spec, settings.vms_dir, snapshots)


@pytest.mark.vm
@pytest.mark.usefixtures("debian_image", "user_env")
def test_a_snapshot_is_saved_and_restored_by_qemu_as_the_user(
    settings: Settings, tmp_path: Path
) -> None:
    snapshots = tmp_path / "snapshots"
    uid = str(pwd.getpwnam(USER).pw_uid)

    async def boot() -> tuple[bool, str, str]:
        machine = _machine(settings, snapshots)
        async with machine:
            assert machine.proc is not None
            qemu_uid = _status(machine.proc.pid)["Uid"][0]
            out = await machine.succeed("echo $((6 * 7))")
            return machine.restored, qemu_uid, out.strip()

    first = asyncio.run(boot())
    assert first == (False, uid, "42")
    [saved] = [p for p in snapshots.iterdir() if not p.name.startswith(".")]
    assert (saved / "state").stat().st_size > 1 << 20  # QEMU wrote the RAM through the fd
    assert asyncio.run(boot()) == (True, uid, "42")
