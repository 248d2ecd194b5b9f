"""``vmrunner exec`` end to end: real QEMU guests under TCG, through the real CLI."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import vmrunner

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("debian_image")]

TCG = ["exec", "--accel", "tcg", "--quiet"]


@pytest.mark.parametrize("code", [0, 1, 42])
def test_exit_status_is_the_commands(vm_env: dict[str, str], code: int) -> None:
    proc = vmrunner([*TCG, "--", "sh", "-c", f"exit {code}"], vm_env)
    assert proc.returncode == code, proc.stderr


def test_stdout_and_stderr_are_kept_apart_and_ordered(vm_env: dict[str, str]) -> None:
    script = "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done"
    proc = vmrunner([*TCG, "--", "bash", "-c", script], vm_env)
    assert proc.returncode == 0
    assert proc.stdout == b"".join(b"out%d\n" % i for i in range(1, 6))
    assert proc.stderr == b"".join(b"err%d\n" % i for i in range(1, 6))


def test_large_and_binary_output_arrive_intact(vm_env: dict[str, str]) -> None:
    # 20 MB of pseudo-random binary data (every byte value), generated in the guest
    # deterministically, hashed in the guest and on the host.
    script = (
        'python3 -c "import sys,hashlib,random; r=random.Random(7); '
        "d=r.randbytes(20*1024*1024)+bytes(range(256)); sys.stdout.buffer.write(d); "
        'sys.stderr.write(hashlib.sha256(d).hexdigest())"'
    )
    proc = vmrunner([*TCG, "--", "sh", "-c", script], vm_env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout) == 20 * 1024 * 1024 + 256
    assert hashlib.sha256(proc.stdout).hexdigest() == proc.stderr.decode()
    assert proc.stdout.endswith(bytes(range(256)))


def test_timeout_kills_the_command_in_the_guest_and_returns_124(vm_env: dict[str, str]) -> None:
    started = time.monotonic()
    proc = vmrunner(
        [*TCG, "--timeout", "3", "--", "sh", "-c", "echo started; sleep 600; echo never"], vm_env
    )
    took = time.monotonic() - started
    assert proc.returncode == 124
    assert proc.stdout == b"started\n"
    assert took < 120, f"exec took {took:.0f} s after a 3 s timeout"


def test_env_and_workdir(vm_env: dict[str, str]) -> None:
    proc = vmrunner(
        [
            *TCG,
            "--env",
            "GREETING=hello world",
            "--workdir",
            "/srv/job",
            "--",
            "sh",
            "-c",
            'echo "$GREETING"; pwd',
        ],
        vm_env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"hello world\n/srv/job\n"


def test_copy_in_and_copy_out_keep_the_tree_and_modes(
    vm_env: dict[str, str], tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (src / "run.sh").chmod(0o755)
    (src / "secret").write_text("s3cret")
    (src / "secret").chmod(0o600)
    (src / "sub" / "data.bin").write_bytes(bytes(range(256)) * 10)
    out = tmp_path / "out"
    script = "cd /work/src && ./run.sh && stat -c '%a %n' run.sh secret && mkdir -p /results && cp -a . /results/copy && echo made > /results/new.txt"
    proc = vmrunner(
        [
            *TCG,
            "--copy-in",
            f"{src}:/work/src",
            "--copy-out",
            f"/results:{out}",
            "--",
            "sh",
            "-c",
            script,
        ],
        vm_env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"ran\n755 run.sh\n600 secret\n"
    copied = out / "copy"
    assert (copied / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (copied / "secret").stat().st_mode & 0o777 == 0o600
    assert (copied / "sub" / "data.bin").read_bytes() == bytes(range(256)) * 10
    assert (out / "new.txt").read_text() == "made\n"


def test_two_vms_at_once(vm_env: dict[str, str]) -> None:
    cmd = [
        sys.executable,
        "-m",
        "vmrunner",
        *TCG,
        "--",
        "sh",
        "-c",
        "cat /proc/sys/kernel/random/uuid; head -c 16 /dev/urandom | od -An -tx1",
    ]
    procs = [
        subprocess.Popen(cmd, env=vm_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    ids = {o[0].strip() for o in outs}
    assert len(ids) == 2, "each exec must get its own VM, with its own random state"


def _qemu_pids_for(state_dir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"qemu-system" in cmdline and str(state_dir).encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def test_kill_9_then_gc_leaves_nothing(vm_env: dict[str, str], state_dir: Path) -> None:
    cmd = [sys.executable, "-m", "vmrunner", *TCG, "--", "sh", "-c", "echo running; sleep 600"]
    proc = subprocess.Popen(
        cmd, env=vm_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the command is running in the guest
    assert line == b"running\n"
    assert _qemu_pids_for(state_dir), "QEMU should be running now"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    gc = vmrunner(["gc", "--json"], vm_env)
    assert gc.returncode == 0, gc.stderr
    deadline = time.monotonic() + 10
    while _qemu_pids_for(state_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _qemu_pids_for(state_dir) == []
    vms = state_dir / "vms"
    assert not vms.exists() or list(vms.iterdir()) == []
    leftovers = [p for p in state_dir.rglob("*") if p.suffix in (".sock", ".qcow2")]
    assert leftovers == []


def test_guest_cannot_reach_the_hosts_loopback(vm_env: dict[str, str]) -> None:
    if os.geteuid() != 0:
        pytest.skip("--network user needs root for its network namespace")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    hits: list[bytes] = []

    def accept() -> None:
        server.settimeout(60)
        try:
            conn, _ = server.accept()
            hits.append(conn.recv(100))
            conn.close()
        except OSError:
            pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    # 10.0.2.2 is slirp's gateway, which plain QEMU maps to the host's 127.0.0.1.
    probe = (
        'python3 -c "import socket,sys\n'
        "s=socket.socket(); s.settimeout(5)\n"
        f"try:\n s.connect(('10.0.2.2', {port})); s.sendall(b'hello'); print('connected')\n"
        "except OSError as e:\n print('unreachable', e)\""
    )
    proc = vmrunner([*TCG, "--network", "user", "--", "sh", "-c", probe], vm_env)
    server.close()
    t.join(5)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"unreachable"), proc.stdout
    assert hits == []
    # and the guest did have a network interface configured
    proc = vmrunner(
        [*TCG, "--network", "user", "--", "ip", "-o", "-4", "addr", "show", "eth0"], vm_env
    )
    assert b"10.0.2.15" in proc.stdout


def test_accel_kvm_fails_fast_with_the_kvm_message(vm_env: dict[str, str]) -> None:
    started = time.monotonic()
    proc = vmrunner(["exec", "--accel", "kvm", "--", "true"], vm_env)
    took = time.monotonic() - started
    assert proc.returncode == 125
    assert b"KVM" in proc.stderr and b"not functional" in proc.stderr
    assert took < 30


def test_every_exec_is_learned_from(vm_env: dict[str, str], tmp_path: Path) -> None:
    import json

    for i in range(3):
        proc = vmrunner([*TCG, "--", "python3", "-c", f"import missing_module_{i}"], vm_env)
        assert proc.returncode == 1
    result = tmp_path / "r.json"
    proc = vmrunner(
        [*TCG, "--json", str(result), "--", "python3", "-c", "import missing_module_9"], vm_env
    )
    doc = json.loads(result.read_text())
    assert doc["status"] == "failure" and doc["exit_status"] == 1 and doc["accel"] == "tcg"
    step = doc["learning"]["failed_steps"][0]
    assert step["template"] == "ModuleNotFoundError: No module named <*>"
    assert step["occurrences_before"] == 3
    assert step["lesson"]["occurrences"] == 4
    lessons = json.loads(vmrunner(["learn", "lessons", "--json"], vm_env).stdout)
    assert [les["occurrences"] for les in lessons["lessons"]] == [4]
    explained = json.loads(vmrunner(["learn", "explain", doc["id"], "--json"], vm_env).stdout)
    assert explained["found"] is True
    predicted = json.loads(
        vmrunner(
            ["learn", "predict", "python3 -c 'import missing_module_1'", "--json"], vm_env
        ).stdout
    )
    assert predicted["probability"] < 0.5


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_cleans_up_at_once(
    vm_env: dict[str, str], state_dir: Path, sig: signal.Signals
) -> None:
    """Ctrl-C (or SIGTERM) during a command: exit 130, the VM and its files are gone."""
    cmd = [sys.executable, "-m", "vmrunner", *TCG, "--", "sh", "-c", "echo running; sleep 600"]
    proc = subprocess.Popen(cmd, env=vm_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"running\n"
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == 130
    assert _qemu_pids_for(state_dir) == []
    vms = state_dir / "vms"
    assert not vms.exists() or list(vms.iterdir()) == []
