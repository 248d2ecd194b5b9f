"""``vmrunner systest --flavor nixos`` through build, install, boot and runtime, for real
as far as this machine allows.

There is no nixpkgs here (and no internet to fetch it), so no real NixOS system can
be built. What does run for real:

* ``nix build`` (Debian's nix-bin) of exactly the attribute vmrunner asks for,
  ``nixosConfigurations.HOST.extendModules { modules = [ vmrunner's module ]; }``,
  from a fixture flake. The fixture *evaluates* vmrunner's agent module (with a stub
  ``pkgs``), asserts what it must say, and writes the unit's ``ExecStart`` into its
  output, so the agent lands in the Nix store as a real dependency of the build.
* The fixture's output is a ``bin/run-HOST-vm`` that follows NixOS's run-script
  contract (``NIX_DISK_IMAGE`` created when missing, ``TMPDIR``/``USE_TMPDIR``,
  ``QEMU_OPTS``, ``QEMU_KERNEL_PARAMS``, ``QEMU_NET_OPTS``, ``-nographic``, a
  user-mode network, ``exec`` of QEMU). It boots vmrunner's Debian image with
  systemd, whose agent unit plays the part of the module's.
* vmrunner then drives it exactly as it would a NixOS VM: the VM in its own network
  namespace, the boot phase until ``systemctl is-system-running``, the runtime phase,
  and cleanup (also after ``kill -9``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from test_debian_vm import _gone, _start_and_wait_for_qemu, nothing_left, phases

from conftest import vmrunner
from vmrunner.guest import agent as agent_module
from vmrunner.images.cache import ImageCache
from vmrunner.results import RESULT_SCHEMA

pytestmark = [pytest.mark.vm, pytest.mark.skipif(not Path("/usr/bin/nix").exists(),
                                                 reason="nix-bin is not installed")]  # fmt: skip

RUN_SCRIPT = """#!/bin/sh
# A stand-in for NixOS's run-@HOST@-vm: the same environment contract, booting
# vmrunner's Debian image instead of a NixOS system.
set -e
NIX_DISK_IMAGE=$(readlink -f "${NIX_DISK_IMAGE:-./@HOST@.qcow2}")
if ! test -e "$NIX_DISK_IMAGE"; then
  qemu-img create -q -f qcow2 -F raw -b @ROOTFS@ "$NIX_DISK_IMAGE"
fi
if [ -z "$TMPDIR" ] || [ -z "$USE_TMPDIR" ]; then
  TMPDIR=$(mktemp -d nix-vm.XXXXXXXXXX --tmpdir)
fi
mkdir -p "$TMPDIR/xchg"
cd "$TMPDIR"
exec qemu-system-x86_64 -machine accel=kvm:tcg -cpu Nehalem -name @HOST@ -m 1024 -smp 2 \\
  -device virtio-rng-pci \\
  -net nic,netdev=user.0,model=virtio -netdev user,id=user.0,"$QEMU_NET_OPTS" \\
  -drive cache=writeback,file="$NIX_DISK_IMAGE",id=drive1,if=none,werror=report \\
  -device virtio-blk-pci,drive=drive1 \\
  -kernel @KERNEL@ -initrd @INITRD@ \\
  -append "root=/dev/vda rw vmrunner.mode=systemd @APPEND@ $QEMU_KERNEL_PARAMS" \\
  -nographic $QEMU_OPTS
"""

FLAKE = """{
  outputs = { self }:
    let
      vm = host: {
        extendModules = { modules }:
          let
            m = (builtins.head modules) { pkgs = { python3 = "/usr"; }; };
            agent = m.systemd.services.vmrunner-agent;
          in
          assert m.virtualisation.graphics == false;
          assert builtins.elem "sysinit.target" agent.wantedBy;
          {
            config.system.build.vm = derivation {
              name = "nixos-vm-${host}"; system = "x86_64-linux"; builder = "/bin/sh";
              PATH = "/usr/bin:/bin";
              script = builtins.readFile (./. + "/run-${host}-vm.sh");
              execStart = agent.serviceConfig.ExecStart;
              args = [ "-c" ''
                mkdir -p $out/bin
                printf '%s' "$script" > $out/bin/run-${host}-vm
                chmod 755 $out/bin/run-${host}-vm
                printf '%s' "$execStart" > $out/agent-exec-start
              '' ];
            };
          };
      };
    in {
      nixosConfigurations.demo = vm "demo";
      nixosConfigurations.panics = vm "panics";
    };
}
"""


@pytest.fixture
def flake(tmp_path: Path, debian_image: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    image = ImageCache(debian_image).find("debian")
    assert image is not None
    d = tmp_path / "flake"
    d.mkdir()
    (d / "flake.nix").write_text(FLAKE)
    # "panics": the initramfs's init does not exist, so the kernel panics
    for host, append in (("demo", ""), ("panics", "rdinit=/nonexistent-rdinit")):
        script = RUN_SCRIPT
        for key, value in (("@HOST@", host), ("@ROOTFS@", str(image.rootfs)), ("@APPEND@", append),
                           ("@KERNEL@", str(image.kernel)), ("@INITRD@", str(image.initrd))):  # fmt: skip
            script = script.replace(key, value)
        (d / f"run-{host}-vm.sh").write_text(script)
    # the toy builder uses the host's /bin/sh, which Nix's sandbox does not provide;
    # no substituter: tests send nothing beyond loopback (not even a DNS query)
    monkeypatch.setenv("NIX_CONFIG", "sandbox = false\nsubstituters =")
    return d


def systest(
    args: list[str], env: dict[str, str], out: Path, timeout: float = 600
) -> tuple[int, dict[str, Any], str]:
    proc = vmrunner(["systest", "--flavor", "nixos", "--accel", "tcg", "--json", str(out), *args],
                    env, timeout=timeout)  # fmt: skip
    return proc.returncode, json.loads(out.read_text()), (proc.stdout + proc.stderr).decode()


def test_nixos_vm_passes_every_phase(flake: Path, tmp_path: Path, state_dir: Path) -> None:
    env = {**os.environ, "VMRUNNER_HOME": str(state_dir)}
    checks = tmp_path / "checks.yml"
    checks.write_text(
        "checks:\n  - unit_active: vmrunner-agent.service\n"
        '  - command: "test -r /proc/cmdline && grep -q panic=-1 /proc/cmdline"\n'
        "  - journal_lacks: 'Kernel panic'\n"
    )
    arts = tmp_path / "artifacts"
    code, doc, text = systest([str(flake), "--host", "demo", "--checks", str(checks),
                               "--keep-artifacts", str(arts)], env, tmp_path / "r.json")  # fmt: skip
    assert code == 0, text
    assert doc["kind"] == "systest" and doc["status"] == "success" and doc["errors"] == []
    assert phases(doc) == dict.fromkeys(
        ("preflight", "build", "install", "boot", "runtime"), "passed"
    )
    validator = Draft202012Validator(
        RESULT_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
    )
    assert list(validator.iter_errors(doc)) == []
    by_name = {p["name"]: p for p in doc["phases"]}
    assert "system state: running" in by_name["boot"]["log_tail"]
    runtime_log = by_name["runtime"]["log_tail"]
    assert "failed units: none" in runtime_log
    assert runtime_log.count("\nok  ") == 3, runtime_log  # the checks file's three checks
    # kept: the nix build log, the console, the phase logs and the result
    assert "nixos-vm-demo" in (arts / "build.log").read_text()
    assert "Linux version" in (arts / "console.log").read_text()
    assert json.loads((arts / "result.json").read_text())["status"] == "success"
    assert doc["artifacts"]["build_log"] == str(arts / "build.log")
    # the agent module was evaluated and its agent is in the store, byte for byte
    out = Path(re.search(r"built (/nix/store/\S+)", by_name["build"]["log_tail"]).group(1))  # type: ignore[union-attr]
    exec_start = (out / "agent-exec-start").read_text()
    agent = re.search(r"(/nix/store/\S+-agent\.py)", exec_start)
    assert agent is not None, exec_start
    assert Path(agent.group(1)).read_bytes() == Path(agent_module.__file__).read_bytes()
    assert f"run script {out}/bin/run-demo-vm" in by_name["install"]["log_tail"]
    nothing_left(state_dir)
    assert not any(n.startswith("vmr-") for n in _netns())


def test_nixos_vm_that_panics_is_a_boot_failure(
    flake: Path, tmp_path: Path, state_dir: Path
) -> None:
    env = {**os.environ, "VMRUNNER_HOME": str(state_dir)}
    code, doc, text = systest([str(flake), "--host", "panics", "--boot-timeout", "120"],
                              env, tmp_path / "r.json")  # fmt: skip
    assert code == 1, text
    assert phases(doc)["install"] == "passed" and phases(doc)["boot"] == "failed"
    [err] = doc["errors"]
    assert err["phase"] == "boot" and err["kind"] == "kernel_panic", err
    # no initramfs init: the kernel mounts the root itself, without the virtio modules
    assert "Kernel panic" in err["message"] and "Unable to mount root fs" in err["message"]
    nothing_left(state_dir)


def test_kill_9_during_a_nixos_boot_leaves_nothing(
    flake: Path, tmp_path: Path, state_dir: Path
) -> None:
    env = {**os.environ, "VMRUNNER_HOME": str(state_dir)}
    proc, qemu = _start_and_wait_for_qemu(
        ["--flavor", "nixos", str(flake), "--host", "demo"], env, state_dir
    )
    owner = json.loads(next((state_dir / "vms").glob("*/owner.json")).read_text())
    netns = owner.get("extra", {}).get("netns")
    assert netns, owner
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert _gone(qemu), "QEMU outlived vmrunner"
    gc = vmrunner(["gc", "--json"], env)
    assert gc.returncode == 0, gc.stderr
    nothing_left(state_dir)
    assert netns not in _netns()


def _netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]
