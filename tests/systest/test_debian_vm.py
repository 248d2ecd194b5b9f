"""``vmrunner systest`` end to end, Debian flavour: real builds and real systemd boots
under TCG, through the real CLI. The recipes only add layers (files, units) over the
default image's base root file system, so each costs seconds to build, not a minute."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from conftest import concurrency_groups, vmrunner
from vmrunner.images.builder import MMDEBSTRAP_TMP_PREFIX
from vmrunner.procs import group_members
from vmrunner.results import RESULT_SCHEMA

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("debian_image")]

UNIT = """[Unit]
Description={desc}
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart={exec}
[Install]
WantedBy=multi-user.target
"""


def recipe(path: Path, name: str, units: dict[str, str], checks: str = "", extra: str = "") -> Path:
    lines = [f"name: {name}", extra, "units:"]
    for unit, exec_start in units.items():
        content = UNIT.format(desc=unit.split(".")[0], exec=exec_start)
        lines.append(
            f"  - name: {unit}\n    content: |\n"
            + "".join(f"      {ln}\n" for ln in content.splitlines())
        )
    path.write_text("\n".join(lines) + "\n" + checks)
    return path


def systest(
    args: list[str], env: dict[str, str], out: Path, timeout: float = 600
) -> tuple[int, dict[str, Any], str]:
    proc = vmrunner(["systest", "--accel", "tcg", "--json", str(out), *args], env, timeout=timeout)
    doc = json.loads(out.read_text())
    return proc.returncode, doc, proc.stdout.decode()


def phases(doc: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["status"] for p in doc["phases"]}


def nothing_left(state_dir: Path) -> None:
    for sub in ("vms", "tmp"):
        d = state_dir / sub
        assert not d.exists() or not any(d.iterdir()), f"left behind in {d}: {list(d.iterdir())}"


def test_good_recipe_passes_every_phase(
    vm_env: dict[str, str], tmp_path: Path, state_dir: Path
) -> None:
    # The run commands had /proc, /sys, /dev and a resolv.conf; the image's resolv.conf link is kept.
    checks = """checks:
  - unit_active: hello.service
  - command: "id alice && grep -q built /etc/built-marker && grep -q '^Name:' /etc/sandbox-marker"
  - command: "test \\"$(readlink /etc/resolv.conf)\\" = /run/resolv.conf"
  - file_contains: {path: /etc/motd, text: hello from vmrunner}
  - journal_lacks: "segfault|Out of memory"
"""
    extra = """users: [alice]
files:
  - {path: /etc/motd, content: "hello from vmrunner\\n", mode: "0644"}
run:
  - "echo built > /etc/built-marker"
  - "test -c /dev/null && test -d /sys/kernel && test -s /etc/resolv.conf && grep '^Name:' /proc/self/status > /etc/sandbox-marker"
"""
    r = recipe(tmp_path / "good.yml", "t-good", {"hello.service": "/bin/echo hello"}, checks, extra)
    junit = tmp_path / "good.xml"
    kept = tmp_path / "artifacts"
    code, doc, text = systest(
        [str(r), "--junit", str(junit), "--keep-artifacts", str(kept)], vm_env, tmp_path / "r.json"
    )
    assert code == 0, text
    assert doc["status"] == "success" and doc["errors"] == []
    assert phases(doc) == dict.fromkeys(
        ("preflight", "build", "install", "boot", "runtime"), "passed"
    )
    assert (
        list(
            Draft202012Validator(
                RESULT_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
            ).iter_errors(doc)
        )
        == []
    )
    assert "SUCCESS" in text and "runtime" in text
    assert 'failures="0"' in junit.read_text()
    # --keep-artifacts: the console, the same result and JUnit documents, phase logs, the recipe
    arts = doc["artifacts"]
    assert json.loads((kept / "result.json").read_text()) == doc
    assert (kept / "junit.xml").read_text() == junit.read_text()
    assert "Welcome to" in (kept / "console.log").read_text()  # systemd on the serial console
    assert (kept / "recipe.yml").read_text() == r.read_text()
    assert "ok   command" in (kept / "phases/runtime.log").read_text()
    built = not doc["phases"][1]["log_tail"].startswith("cached image")
    assert ("build_log" in arts) == built  # a cached image has no build log
    expected = {"console", "result", "junit", "recipe", *(f"phase_{p}" for p in phases(doc))}
    assert set(arts) == expected | ({"build_log"} if built else set())
    assert all(Path(path).parent in (kept, kept / "phases") for path in arts.values())
    assert all(Path(path).is_file() for path in arts.values())
    nothing_left(state_dir)


def test_failing_unit_is_a_runtime_service_failure_with_its_journal(
    vm_env: dict[str, str], tmp_path: Path, state_dir: Path
) -> None:
    r = recipe(tmp_path / "fail.yml", "t-units",
               {"broken.service": "/bin/sh -c 'echo broken-marker-42; exit 3'",
                "fine.service": "/bin/true"},
               "checks:\n  - unit_active: fine.service\n  - unit_active: broken.service\n")  # fmt: skip
    # every kind of check, each failing but the first, from a --checks file
    checks = tmp_path / "checks.yml"
    checks.write_text(
        "checks:\n"
        "  - command: 'true'\n"
        "  - command: 'echo out-marker; exit 3'\n"
        "  - port_open: 9\n"
        "  - file_contains: {path: /etc/hostname, text: not-this-host}\n"
        "  - file_contains: {path: /nonexistent, text: x}\n"
        "  - journal_lacks: 'broken-marker-4[0-9]'\n"
    )
    code, doc, text = systest([str(r), "--checks", str(checks)], vm_env, tmp_path / "r.json")
    assert code == 1, text
    failed = {(e["file"], e["line"]): e for e in doc["errors"] if e["kind"] == "check_failed"}
    line = r.read_text().splitlines().index("  - unit_active: broken.service") + 1
    assert sorted(failed) == [(str(checks), n) for n in (3, 4, 5, 6, 7)] + [(str(r), line)]
    assert failed[(str(r), line)]["actual"] == "failed"
    assert failed[(str(r), line)]["expected"] == "active"
    assert "exit status 3" in failed[(str(checks), 3)]["actual"]
    assert "out-marker" in failed[(str(checks), 3)]["actual"]
    assert failed[(str(checks), 4)]["actual"].startswith("closed")
    assert failed[(str(checks), 5)]["actual"].strip() == "vmrunner"
    assert "No such file" in failed[(str(checks), 6)]["actual"]
    assert "broken-marker-42" in failed[(str(checks), 7)]["actual"]
    assert doc["status"] == "failure" and doc["failed_phase"] == "runtime"
    assert phases(doc)["boot"] == "passed" and phases(doc)["runtime"] == "failed"
    [err] = [e for e in doc["errors"] if e["kind"] == "service_failed"]
    assert err["phase"] == "runtime" and err["unit"] == "broken.service"
    assert err["result"] == "exit-code" and err["exit_status"] == 3
    assert "broken-marker-42" in err["journal_tail"]
    assert "broken.service" in text
    nothing_left(state_dir)


def test_hanging_unit_times_out_the_boot_with_partial_results(
    vm_env: dict[str, str], tmp_path: Path, state_dir: Path
) -> None:
    r = recipe(
        tmp_path / "hang.yml",
        "t-hang",
        {"hang.service": "/bin/sleep infinity", "fine.service": "/bin/true"},
    )
    started = time.monotonic()
    code, doc, text = systest([str(r), "--boot-timeout", "60"], vm_env, tmp_path / "r.json")
    assert code == 1, text
    assert doc["status"] == "timeout" and doc["failed_phase"] == "boot"
    assert phases(doc)["boot"] == "timeout" and phases(doc)["runtime"] == "skipped"
    [err] = doc["errors"]
    assert err["kind"] == "boot_timeout" and err["phase"] == "boot"
    assert "hang.service" in err["pending_units"]
    assert "multi-user.target" in err["pending_units"]
    assert "systemd-journald.service" in err["active_units"]
    assert "fine.service" in err["active_units"]
    boot = next(p for p in doc["phases"] if p["name"] == "boot")
    assert boot["duration_s"] < 60 + 30, boot  # the deadline, then the unit lists (<= 25 s)
    build = sum(p["duration_s"] for p in doc["phases"] if p["name"] in ("build", "install"))
    assert time.monotonic() - started < build + 60 + 60
    nothing_left(state_dir)


def test_unreachable_apt_source_is_a_fast_network_error(
    vm_env: dict[str, str], tmp_path: Path, state_dir: Path
) -> None:
    url = "http://127.0.0.1:9/debian"
    r = tmp_path / "net.yml"
    r.write_text(f'name: t-net\nsources: ["deb {url} bookworm main"]\n')
    base = Path(os.environ.get("VMRUNNER_CACHE", Path.home() / ".cache/vmrunner")) / "images/.base"
    before = set(base.glob("*.tar")) if base.is_dir() else set()
    started = time.monotonic()
    code, doc, text = systest([str(r)], vm_env, tmp_path / "r.json")
    took = time.monotonic() - started
    assert code == 1, text
    assert doc["failed_phase"] == "build" and phases(doc)["install"] == "skipped"
    [err] = doc["errors"]
    assert err["kind"] == "network_error" and err["phase"] == "build"
    assert err["url"].startswith(url) and err["host"] == "127.0.0.1"
    assert "Connection refused" in err["reason"]
    assert err["log_tail"].count("Err:") <= 1 and "Retrying" not in err["log_tail"]
    assert took < 30, f"network failure reported after {took:.1f} s"
    assert (set(base.glob("*.tar")) if base.is_dir() else set()) == before, (
        "a failed base was cached"
    )
    nothing_left(state_dir)


def test_failed_build_keeps_its_artifacts(
    vm_env: dict[str, str], tmp_path: Path, state_dir: Path
) -> None:
    """A build that fails before any VM boots (an apt source on a closed port) still
    leaves the result, JUnit, phase logs, the build log and the recipe in DIR."""
    r = tmp_path / "net.yaml"
    r.write_text('name: t-net\nsources: ["deb http://127.0.0.1:9/debian bookworm main"]\n')
    kept = tmp_path / "kept"
    code, doc, _ = systest([str(r), "--keep-artifacts", str(kept)], vm_env, tmp_path / "r.json")
    assert code == 1 and doc["failed_phase"] == "build"
    files = sorted(str(p.relative_to(kept)) for p in kept.rglob("*") if p.is_file())
    assert files == ["build.log", "junit.xml", "phases/build.log", "phases/preflight.log",
                     "recipe.yaml", "result.json"]  # fmt: skip
    assert doc["artifacts"] == {
        "build_log": str(kept / "build.log"), "recipe": str(kept / "recipe.yaml"),
        "phase_preflight": str(kept / "phases/preflight.log"),
        "phase_build": str(kept / "phases/build.log"),
        "junit": str(kept / "junit.xml"), "result": str(kept / "result.json"),
    }  # fmt: skip
    assert json.loads((kept / "result.json").read_text()) == doc
    assert '<failure type="network_error"' in (kept / "junit.xml").read_text()
    build = (kept / "phases/build.log").read_text()
    assert "Connection refused" in build and "network_error: " in build
    assert "recipe: systest-t-net" in (kept / "phases/preflight.log").read_text()
    log = (kept / "build.log").read_text()
    assert "== bootstrapping Debian bookworm" in log and "127.0.0.1:9" in log
    assert (kept / "recipe.yaml").read_text() == r.read_text()
    nothing_left(state_dir)


def test_accel_kvm_fails_fast_in_preflight(vm_env: dict[str, str], tmp_path: Path) -> None:
    r = tmp_path / "k.yml"
    r.write_text("name: t-kvm\n")
    started = time.monotonic()
    proc = vmrunner(
        ["systest", str(r), "--accel", "kvm", "--json", str(tmp_path / "r.json")], vm_env
    )
    took = time.monotonic() - started
    doc = json.loads((tmp_path / "r.json").read_text())
    if doc["accel"] == "kvm":
        pytest.skip("KVM is functional on this host; this test needs a host without it")
    assert proc.returncode == 1
    assert doc["failed_phase"] == "preflight" and doc["errors"][0]["kind"] == "kvm_unavailable"
    assert phases(doc)["build"] == "skipped"
    assert took < 30
    # every phase is an observation for learning: the second failure carries the history
    vmrunner(["systest", str(r), "--accel", "kvm", "--json", str(tmp_path / "r2.json")], vm_env)
    again = json.loads((tmp_path / "r2.json").read_text())
    step = again["learning"]["failed_steps"][0]
    assert step["step_name"] == "preflight" and step["occurrences_before"] == 1


def test_invalid_recipe_names_file_and_line(vm_env: dict[str, str], tmp_path: Path) -> None:
    r = tmp_path / "bad.yml"
    r.write_text("name: t-bad\nchecks:\n  - port_open: 70000\n")
    proc = vmrunner(
        ["systest", str(r), "--accel", "tcg", "--json", str(tmp_path / "r.json")], vm_env
    )
    doc = json.loads((tmp_path / "r.json").read_text())
    assert proc.returncode == 1
    [err] = doc["errors"]
    assert err["kind"] == "recipe_invalid" and err["file"] == str(r) and err["line"] == 3


def _start_and_wait_for_qemu(
    args: list[str], env: dict[str, str], state_dir: Path
) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen([sys.executable, "-m", "vmrunner", "systest", "--accel", "tcg", "-q", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for owner in (state_dir / "vms").glob("*/owner.json"):
            data = json.loads(owner.read_text() or "{}")
            if data.get("vmm_pid"):
                time.sleep(3)  # in the middle of the boot
                return proc, int(data["vmm_pid"])
        time.sleep(0.2)
    proc.kill()
    pytest.fail("QEMU never started")


def _gone(pid: int, within: float = 10) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True
        if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupt_during_boot_leaves_nothing(
    vm_env: dict[str, str], tmp_path: Path, state_dir: Path, sig: signal.Signals
) -> None:
    r = recipe(
        tmp_path / "hang.yml",
        "t-hang",
        {"hang.service": "/bin/sleep infinity", "fine.service": "/bin/true"},
    )
    out = tmp_path / "r.json"
    proc, qemu = _start_and_wait_for_qemu([str(r), "--json", str(out)], vm_env, state_dir)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert _gone(qemu), "QEMU outlived vmrunner"
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        doc = json.loads(out.read_text())
        assert doc["status"] == "cancelled" and doc["errors"][-1]["kind"] == "cancelled"
    else:
        gc = vmrunner(["gc", "--json"], vm_env)
        assert gc.returncode == 0, gc.stderr
    nothing_left(state_dir)


# -- Ctrl-C during the build -------------------------------------------------------------


class _Lines:
    """Collects a stream's lines in a thread (vmrunner's progress messages on stderr)."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in iter(stream.readline, b""):
            self.lines.append(line.decode("utf-8", "replace"))

    def wait_for(self, text: str, within: float) -> None:
        deadline = time.monotonic() + within
        while not any(text in ln for ln in self.lines):
            if time.monotonic() > deadline:
                pytest.fail(f"never saw {text!r} on stderr:\n{''.join(self.lines)}")
            time.sleep(0.1)


@contextlib.contextmanager
def _stalled_mirror() -> Iterator[tuple[int, threading.Event]]:
    """An HTTP "mirror" on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    accepted, stop, conns = threading.Event(), threading.Event(), []

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conns.append(server.accept()[0])
                accepted.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(5)
        for conn in [*conns, server]:
            conn.close()


def _procs(match: Callable[[bytes, str], bool]) -> list[int]:
    """Pids whose (cmdline, root directory) ``match``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                root = str((entry / "root").readlink())
            except OSError:
                continue
            if match(cmdline, root):
                found.append(int(entry.name))
    return found


def _wait_for_procs(match: Callable[[bytes, str], bool], within: float) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if found := _procs(match):
            return found
        time.sleep(0.2)
    pytest.fail("the build never got to the slow part")


def _pgid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])


@pytest.mark.parametrize("slow", ["run-command", "mmdebstrap"])
def test_ctrl_c_during_the_build_stops_it_at_once_and_leaves_nothing(
    vm_env: dict[str, str], tmp_path: Path, state_dir: Path, debian_image: Path, slow: str
) -> None:
    """SIGINT while the build runs a recipe's ``sleep 300`` (after the cached base) or while
    mmdebstrap waits on a stalled mirror: exit 130 within seconds, the result and artifacts
    written, and no process, temporary directory or mount of the build left."""
    name = f"t-cancel-{slow}"
    kept = tmp_path / "kept"

    def in_build(_cmd: bytes, root: str) -> bool:  # chrooted into a build directory
        return root.startswith(str(debian_image))

    with _stalled_mirror() as (port, accepted):
        body = 'run: ["sleep 300"]' if slow == "run-command" else \
            f'sources: ["deb http://127.0.0.1:{port}/debian bookworm main"]'  # fmt: skip
        r = tmp_path / "slow.yml"
        r.write_text(f"name: {name}\n{body}\n")
        out = tmp_path / "r.json"
        proc = subprocess.Popen(
            [sys.executable, "-m", "vmrunner", "systest", "--accel", "tcg", "--json", str(out),
             "--keep-artifacts", str(kept), str(r)],
            env=vm_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        stderr = _Lines(proc.stderr)
        try:
            if slow == "run-command":
                stderr.wait_for("applying the recipe's", within=300)

                def slow_part(cmd: bytes, root: str) -> bool:
                    return cmd == b"sleep\x00300\x00" and in_build(cmd, root)
            else:
                stderr.wait_for("bootstrapping Debian", within=300)
                assert accepted.wait(60), "apt never reached the mirror"

                def slow_part(cmd: bytes, root: str) -> bool:
                    return b"mmdebstrap" in cmd and f"127.0.0.1:{port}".encode() in cmd

            tool = _wait_for_procs(slow_part, within=60)
            groups = {_pgid(pid) for pid in tool}
            assert all(group_members(g) for g in groups)
            started = time.monotonic()
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, "".join(stderr.lines)
    # not a speed check: without cancellation the build would run its 300 s to the end
    assert took < 60, f"vmrunner took {took:.1f} s to stop after Ctrl-C"
    doc = json.loads(out.read_text())
    assert doc["status"] == "cancelled" and doc["errors"][-1]["kind"] == "cancelled"
    assert doc["errors"][-1]["phase"] == "build" and phases(doc)["install"] == "skipped"
    assert json.loads((kept / "result.json").read_text()) == doc
    assert (kept / "phases/build.log").is_file()
    what = "recipe run command 'sleep 300'" if slow == "run-command" else "mmdebstrap"
    assert f"{what}: cancelled (its process group was killed)" in (kept / "build.log").read_text()
    # Nothing of the build is left: processes, temporary directories, mounts.
    assert all(_gone(pid, within=1) for pid in tool)
    assert [g for g in groups if group_members(g)] == []
    assert _procs(in_build) == []
    image_dir = debian_image / f"systest-{name}"
    assert list(image_dir.glob(".tmp-*")) == [] and not list(image_dir.glob("*/manifest.json"))
    assert list((debian_image / ".base").glob(f".tmp-{proc.pid}-*")) == []
    assert list(Path(tempfile.gettempdir()).glob(f"{MMDEBSTRAP_TMP_PREFIX}{proc.pid}-*")) == []
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(debian_image) not in mounts and MMDEBSTRAP_TMP_PREFIX not in mounts
    nothing_left(state_dir)


def _wait_state(state_dir: Path, pred: Any, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if pred(concurrency_groups(state_dir)):
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    pytest.fail(f"concurrency state never matched: {concurrency_groups(state_dir)}")


def test_concurrency_group_runs_one_and_a_newer_replaces_the_waiting_one(
    vm_env: dict[str, str], tmp_path: Path, state_dir: Path
) -> None:
    """FR-008: one active systest per group; a newer trigger cancels the older waiting one."""
    r = recipe(tmp_path / "slow.yml", "t-conc", {"hello.service": "/bin/echo hello"},
               'checks:\n  - command: "sleep 8"\n')  # fmt: skip

    def start(name: str, *extra: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "vmrunner", "systest", "--concurrency", "feature/x", "-q",
                "--json", str(tmp_path / f"{name}.json"), *extra]  # fmt: skip
        return subprocess.Popen(argv, env=vm_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    first = start("first", "--accel", "tcg", str(r))
    _wait_state(state_dir, lambda g: any(v["running"] for v in g.values()), first)
    second = start("second", "--accel", "tcg", str(r))
    _wait_state(state_dir, lambda g: any(v["pending"] for v in g.values()), second)
    third = start("third", "--accel", "kvm", str(r))  # fails fast in preflight, once it runs
    second.communicate(timeout=60)
    assert first.poll() is None, "the replaced run should end while the first still runs"
    first.communicate(timeout=600)
    third.communicate(timeout=120)
    docs = {
        n: json.loads((tmp_path / f"{n}.json").read_text()) for n in ("first", "second", "third")
    }
    assert docs["first"]["status"] == "success", docs["first"]["errors"]
    assert second.returncode == 1 and docs["second"]["status"] == "cancelled"
    [err] = docs["second"]["errors"]
    assert err["kind"] == "cancelled" and err["concurrency_group"] == "feature/x"
    assert "replaced this one before it started" in err["message"]
    assert set(phases(docs["second"]).values()) == {"skipped"}
    # the third waited for the first to finish, then ran
    assert docs["third"]["errors"][0]["kind"] == "kvm_unavailable"
    assert docs["third"]["phases"][0]["started_at"] >= docs["first"]["finished_at"]
    assert concurrency_groups(state_dir) == {}
    nothing_left(state_dir)
