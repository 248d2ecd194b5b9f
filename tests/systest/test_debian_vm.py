"""``vmrunner systest`` end to end, Debian flavour: real builds and real systemd boots
under TCG, through the real CLI. The recipes only add layers (files, units) over the
default image's base root file system, so each costs seconds to build, not a minute."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from conftest import vmrunner
from vmrunner.systest.result import RESULT_SCHEMA

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
    checks = """checks:
  - unit_active: hello.service
  - command: "id alice && grep -q built /etc/built-marker"
  - file_contains: {path: /etc/motd, text: hello from vmrunner}
  - journal_lacks: "segfault|Out of memory"
"""
    extra = """users: [alice]
files:
  - {path: /etc/motd, content: "hello from vmrunner\\n", mode: "0644"}
run: ["echo built > /etc/built-marker"]"""
    r = recipe(tmp_path / "good.yml", "t-good", {"hello.service": "/bin/echo hello"}, checks, extra)
    junit = tmp_path / "good.xml"
    code, doc, text = systest([str(r), "--junit", str(junit)], vm_env, tmp_path / "r.json")
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
    nothing_left(state_dir)


def test_failing_unit_is_a_runtime_service_failure_with_its_journal(
    vm_env: dict[str, str], tmp_path: Path, state_dir: Path
) -> None:
    r = recipe(tmp_path / "fail.yml", "t-units",
               {"broken.service": "/bin/sh -c 'echo broken-marker-42; exit 3'",
                "fine.service": "/bin/true"})  # fmt: skip
    code, doc, text = systest([str(r)], vm_env, tmp_path / "r.json")
    assert code == 1, text
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
    assert boot["duration_s"] < 60 + 8, boot
    build = sum(p["duration_s"] for p in doc["phases"] if p["name"] in ("build", "install"))
    assert time.monotonic() - started < build + 60 + 20
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
