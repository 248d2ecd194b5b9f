"""VM engine benchmark: cold exec against the raw-QEMU floor, boot-to-agent, round trips.

Prints figures and ratios against baselines measured in the same run; asserts
nothing (this machine is shared and noisy). Usage::

    .venv/bin/python bench/vm_bench.py [--runs 5] [--roundtrips 100]

* floor: raw ``qemu-system-x86_64`` booting the same kernel, initramfs and image
  (through a fresh qcow2 overlay) with ``vmrunner.mode=poweroff``: the initramfs
  loads the virtio modules, mounts the root disk and powers off at once.
* cold exec: ``vmrunner exec --accel tcg -- true`` as a user runs it (new process,
  CLI start-up, a fresh VM from its overlay, the command, teardown).
* agent ready: from QEMU start to the guest agent's hello (cold boot), and from
  QEMU start to the first answer of a VM restored from a snapshot.
* round trip: ``true`` 100 times in one running VM; next to it the guest's own
  fork+exec+wait time for ``true`` (the agent's measured spawn-to-reap time) and
  a shell loop's per-iteration time in the guest.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vmrunner.config import load_settings
from vmrunner.images.cache import ImageCache
from vmrunner.vm.machine import Accel, MachineSpec
from vmrunner.vm.qemu import QemuMachine
from vmrunner.vm.qemu_args import FAST_KERNEL_ARGS, TCG_CPU


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def floor_run(image_dir: Path, tmp: Path) -> float:
    overlay = tmp / "floor.qcow2"
    overlay.unlink(missing_ok=True)
    t0 = time.monotonic()
    subprocess.run(
        [
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            str(image_dir / "rootfs.raw"),
            str(overlay),
        ],
        check=True,
    )
    subprocess.run(
        [
            "qemu-system-x86_64", "-machine", "q35,accel=tcg", "-cpu", TCG_CPU, "-smp", "2", "-m", "1024",
            "-nodefaults", "-no-user-config", "-display", "none", "-vga", "none", "-no-reboot",
            "-kernel", str(image_dir / "vmlinuz"), "-initrd", str(image_dir / "initrd.cpio"),
            "-append", " ".join([*FAST_KERNEL_ARGS, "vmrunner.mode=poweroff"]),
            "-drive", f"file={overlay},if=none,id=root,format=qcow2,cache=unsafe",
            "-device", "virtio-blk-pci,drive=root", "-serial", f"file:{tmp / 'floor.log'}",
        ],
        check=True,
    )  # fmt: skip
    return time.monotonic() - t0


def cold_exec_run(env: dict[str, str], extra: list[str]) -> float:
    t0 = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "vmrunner",
            "exec",
            "--accel",
            "tcg",
            "--quiet",
            *extra,
            "--",
            "true",
        ],
        env=env,
        check=True,
    )
    return time.monotonic() - t0


async def roundtrips(spec: MachineSpec, vms_dir: Path, n: int) -> dict[str, float]:
    machine = QemuMachine(spec, vms_dir)
    async with machine:
        ready = machine.timings.get("agent_ready_s", float("nan"))
        await machine.execute(["true"])  # warm the guest's page cache
        host, guest = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            res = await machine.execute(["true"])
            host.append(time.perf_counter() - t0)
            guest.append(res.duration_s)
        loop = await machine.run(
            "s=$(date +%s%N); for i in $(seq 100); do /bin/true; done; e=$(date +%s%N); echo $(( (e - s) / 100 ))"
        )
        shell_ns = float(loop.stdout.decode().strip() or "nan")
    return {
        "agent_ready_s": ready,
        "rt_median_ms": statistics.median(host) * 1e3,
        "rt_p95_ms": pct(host, 95) * 1e3,
        "guest_spawn_median_ms": statistics.median(guest) * 1e3,
        "guest_spawn_p95_ms": pct(guest, 95) * 1e3,
        "guest_shell_forkexec_ms": shell_ns / 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--roundtrips", type=int, default=100)
    args = ap.parse_args()
    settings = load_settings()
    image = ImageCache(settings.images_dir).ensure(
        "debian", lambda m: print("image:", m, file=sys.stderr)
    )
    with tempfile.TemporaryDirectory(prefix="vmr-bench-") as td:
        tmp = Path(td)
        env = {**os.environ, "VMRUNNER_HOME": str(tmp / "state")}
        cold_exec_run(
            env, []
        )  # first run pays one-off costs (KVM check, snapshot) outside the figures
        floors, colds = [], []
        for _ in range(args.runs):  # interleave so that machine noise hits both alike
            floors.append(floor_run(image.path, tmp))
            colds.append(cold_exec_run(env, []))
        cold_boots = [cold_exec_run(env, ["--no-snapshot"]) for _ in range(args.runs)]
        spec = MachineSpec(image=image, accel=Accel.TCG)
        rt = asyncio.run(roundtrips(spec, tmp / "vms", args.roundtrips))
    f, c, cb = statistics.median(floors), statistics.median(colds), statistics.median(cold_boots)
    print(f"runs per figure: {args.runs} (median; min..max)")
    print(
        f"floor (raw qemu, same kernel+image, init powers off): {f:.2f} s ({min(floors):.2f}..{max(floors):.2f})"
    )
    print(
        f"cold 'vmrunner exec --accel tcg -- true':              {c:.2f} s ({min(colds):.2f}..{max(colds):.2f})  ratio {c / f:.2f}x floor (goal <= 1.15x)"
    )
    print(
        f"same with --no-snapshot (full cold boot):              {cb:.2f} s ({min(cold_boots):.2f}..{max(cold_boots):.2f})  ratio {cb / f:.2f}x floor"
    )
    print(f"QEMU start to agent ready (cold boot, in-process):     {rt['agent_ready_s']:.2f} s")
    print(
        f"round trip of 'true' over {args.roundtrips}: median {rt['rt_median_ms']:.2f} ms, p95 {rt['rt_p95_ms']:.2f} ms"
    )
    print(
        f"guest fork+exec+wait of 'true' (agent-measured): median {rt['guest_spawn_median_ms']:.2f} ms, p95 {rt['guest_spawn_p95_ms']:.2f} ms"
    )
    print(
        f"guest shell loop fork+exec of /bin/true: {rt['guest_shell_forkexec_ms']:.2f} ms per iteration"
    )
    print(
        f"protocol overhead (median rt - median guest spawn): {rt['rt_median_ms'] - rt['guest_spawn_median_ms']:.2f} ms (goal <= 2 ms)"
    )


if __name__ == "__main__":
    main()
