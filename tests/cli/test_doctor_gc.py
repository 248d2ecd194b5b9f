"""doctor and gc through the real CLI, and gc's rules on recorded directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import vmrunner
from vmrunner.vm.records import VmRecord, collect, new_record_dir


def _cpu_has_virt() -> bool:
    flags = Path("/proc/cpuinfo").read_text()
    return " vmx" in flags or " svm" in flags


def test_doctor_reports_kvm_in_three_levels(vm_env: dict[str, str]) -> None:
    proc = vmrunner(["doctor", "--json"], vm_env, timeout=120)
    report = json.loads(proc.stdout)
    kvm = report["kvm"]
    assert kvm["present"] == Path("/dev/kvm").exists()
    if not kvm["present"]:
        assert kvm["functional"] is False
    if not _cpu_has_virt():
        # This host's /dev/kvm is a software hypervisor: present, answering, not functional.
        assert kvm["functional"] is False
        if kvm["api"]:
            assert "not hardware speed" in kvm["detail"]
    assert report["qemu"]["version"].startswith("QEMU emulator version")
    assert report["tools"]["mmdebstrap"]
    # cached for the host's uptime (keyed by boot_id): a second doctor reads the cache,
    # it does not probe again
    cache = Path(vm_env["VMRUNNER_HOME"]) / "kvm-check.json"
    assert (
        json.loads(cache.read_text())["boot_id"]
        == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    )
    before = cache.stat().st_mtime_ns
    again = json.loads(vmrunner(["doctor", "--json"], vm_env, timeout=120).stdout)
    assert again["kvm"] == kvm
    assert cache.stat().st_mtime_ns == before


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_gc_reaps_dead_owners_and_spares_live_ones(tmp_path: Path) -> None:
    vms = tmp_path / "vms"
    mine = new_record_dir(vms)  # owned by this (live) process
    orphan = new_record_dir(vms)
    victim = subprocess.Popen(["sleep", "600"], start_new_session=True)
    rec = VmRecord.load(orphan.path)
    assert rec is not None
    rec.owner_pid = _dead_pid()
    rec.vmm_pid = victim.pid
    from vmrunner.procs import proc_start_ticks

    rec.vmm_ticks = proc_start_ticks(victim.pid)
    rec.save()
    (orphan.path / "agent.sock").write_text("")
    reused = new_record_dir(vms)  # a dead owner whose VMM pid was reused by someone else
    rec2 = VmRecord.load(reused.path)
    assert rec2 is not None
    bystander = subprocess.Popen(["sleep", "600"], start_new_session=True)
    rec2.owner_pid = _dead_pid()
    rec2.vmm_pid = bystander.pid
    rec2.vmm_ticks = 1  # not the bystander's start time
    rec2.save()
    tmpdir = tmp_path / "images" / "debian" / f".tmp-{_dead_pid()}-abcd"
    tmpdir.mkdir(parents=True)
    livetmp = tmp_path / "images" / "debian" / f".tmp-{os.getpid()}-abcd"
    livetmp.mkdir(parents=True)
    try:
        report = collect([vms], [(tmp_path / "images", "*/.tmp-*")])
        assert victim.wait(timeout=10) is not None, "the orphan's VMM process group is killed"
        assert bystander.poll() is None, "a reused pid is never killed"
        assert report.vmm_pids == [victim.pid]
        assert sorted(report.vm_dirs) == sorted([str(orphan.path), str(reused.path)])
        assert mine.path.exists() and not orphan.path.exists() and not reused.path.exists()
        assert not tmpdir.exists() and livetmp.exists()
    finally:
        for p in (victim, bystander):
            p.kill()
            p.wait()


def test_gc_cli_json(vm_env: dict[str, str]) -> None:
    proc = vmrunner(["gc", "--json"], vm_env)
    assert proc.returncode == 0
    assert set(json.loads(proc.stdout)) == {"vm_dirs", "vmm_pids", "tmp_dirs", "interrupted_runs"}


def test_bad_flags_are_clear_errors(vm_env: dict[str, str], tmp_path: Path) -> None:
    cases = [
        (["exec", "--accel", "fast", "--", "true"], b"'fast' is not one of 'auto', 'kvm', 'tcg'"),
        (["exec", "--network", "bridge", "--", "true"], b"'bridge' is not one of 'none', 'user'"),
        (["exec", "--copy-in", "nocolon", "--", "true"], b"--copy-in expects SRC:DST"),
        (
            ["exec", "--copy-in", f"{tmp_path}/missing:/x", "--", "true"],
            b"does not exist on the host",
        ),
        (["exec", "--image", "nosuch", "--accel", "tcg", "--", "true"], b"unknown image 'nosuch'"),
        (["exec", "--accel", "tcg"], b"Missing argument"),
    ]
    for args, needle in cases:
        proc = vmrunner(args, vm_env)
        assert proc.returncode != 0, args
        assert needle in proc.stderr, (args, proc.stderr)
