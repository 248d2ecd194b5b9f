"""A NixOS VM started by its own run script, driven like any other QEMU machine.

``nix build FLAKE#nixosConfigurations.HOST.config.system.build.vm`` produces
``bin/run-HOST-vm``: a shell script that creates the VM's disk when it is missing
and then ``exec``s QEMU with the configuration's kernel, initrd, memory, CPUs,
``/nix/store`` share and user-mode network. Its contract (stable across NixOS
releases) is a set of environment variables, which vmrunner sets:

* ``NIX_DISK_IMAGE``: where the disk is created (in the VM's own directory, so it
  is removed with the VM, also by gc after a crash);
* ``TMPDIR`` with ``USE_TMPDIR=1``: the VM's scratch directory (ours, likewise);
* ``QEMU_OPTS``: appended to QEMU's command line. vmrunner adds its console log,
  QMP channel and the guest agent's virtio-serial port here (inherited descriptors,
  like every VM's: :mod:`.vmfds`), ``-no-reboot``, and the
  accelerator preflight chose: the script asks for ``kvm:tcg``, which would take a
  ``/dev/kvm`` that opens but does not work (as on this project's CI machines) and
  crawl; a later ``-machine accel=`` overrides it;
* ``QEMU_KERNEL_PARAMS``: appended to the kernel command line (serial console,
  ``panic=-1``, systemd's status lines, which the boot classification reads).

The guest agent itself comes from the NixOS module vmrunner adds with
``extendModules`` (see ``vmrunner.systest.nix``). The script always gives the
guest a user-mode network, so it runs in a network namespace of its own
(``vm.netns``): the guest cannot reach the host's loopback. QEMU keeps the
parent-death signal across the script's ``exec`` and runs in its own process
group, like every other VM. It runs as vmrunner's own user, whatever ``qemu_user`` says:
the script creates the disk in the VM's directory and QEMU opens it (and the
``/nix/store`` share) by path.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from vmrunner.errors import VmStartError
from vmrunner.procs import vmm_env
from vmrunner.vm import sandbox
from vmrunner.vm.machine import Accel, MachineSpec, Network
from vmrunner.vm.qemu import QemuMachine
from vmrunner.vm.qemu_args import AGENT_PORT_NAME, channel_args
from vmrunner.vm.vmfds import ChannelFds

KERNEL_PARAMS = ("console=ttyS0", "panic=-1", "systemd.show_status=1")


def find_run_script(out: Path) -> Path:
    """The ``bin/run-*-vm`` script in a ``system.build.vm`` output."""
    scripts = sorted((out / "bin").glob("run-*-vm"))
    if len(scripts) != 1:
        found = ", ".join(p.name for p in scripts) or "none"
        raise VmStartError(
            f"{out} is not a NixOS VM: expected one bin/run-*-vm script, found {found}"
        )
    if not os.access(scripts[0], os.X_OK):
        raise VmStartError(f"{scripts[0]} is not executable")
    return scripts[0]


def qemu_opts(vmdir: Path, chans: ChannelFds, accel: Accel) -> list[str]:
    """What vmrunner appends to QEMU's command line through ``QEMU_OPTS`` (pure)."""
    return [
        "-machine", f"accel={accel.value}",
        "-no-reboot",
        *channel_args(chans, vmdir / "console.log", "vmr-console", "vmr-qmp", "vmr-agent"),
        "-serial", "chardev:vmr-console",
        "-mon", "chardev=vmr-qmp,mode=control",
        "-device", "virtio-serial-pci,id=vmr-serial",
        "-device", f"virtserialport,bus=vmr-serial.0,chardev=vmr-agent,name={AGENT_PORT_NAME}",
    ]  # fmt: skip


def run_script_env(
    vmdir: Path, chans: ChannelFds, accel: Accel, base: Mapping[str, str]
) -> dict[str, str]:
    """The environment for the run script (pure): ``base`` plus the script's variables.

    The script splits its variables on white space, so ``vmdir`` may contain none.
    """
    opts = qemu_opts(vmdir, chans, accel)
    if any(c.isspace() for c in str(vmdir)):
        raise VmStartError(f"the VM directory {str(vmdir)!r} contains white space, "
                           "which the NixOS run script cannot carry")  # fmt: skip
    return {
        **base,
        "NIX_DISK_IMAGE": str(vmdir / "disk.qcow2"),
        "TMPDIR": str(vmdir / "tmp"),
        "USE_TMPDIR": "1",
        "QEMU_OPTS": " ".join(opts),
        "QEMU_KERNEL_PARAMS": " ".join(KERNEL_PARAMS),
    }


class NixosVmMachine(QemuMachine):
    """A VM started by a NixOS ``run-HOST-vm`` script (no snapshots; always namespaced).

    ``spec.image.path`` is the ``system.build.vm`` output; CPUs, memory and kernel
    come from the NixOS configuration, not from the spec.
    """

    def __init__(self, spec: MachineSpec, vms_dir: Path, run_script: Path) -> None:
        super().__init__(dataclasses.replace(spec, network=Network.USER), vms_dir, None)
        self.run_script = run_script

    def credentials(self) -> sandbox.Credentials | None:
        """None: the run script's QEMU runs as vmrunner's user (it opens paths itself)."""
        return None

    def _command(self, qemu: str, chans: ChannelFds) -> tuple[list[str], dict[str, str] | None]:
        (self.vmdir / "tmp").mkdir(exist_ok=True)
        return [str(self.run_script)], run_script_env(self.vmdir, chans, self.spec.accel, vmm_env())

    def _create_disk(self, qemu_img: str) -> None:
        """Nothing: the run script creates ``NIX_DISK_IMAGE`` itself when it is missing."""
