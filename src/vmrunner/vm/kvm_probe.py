"""A minimal KVM guest that times a tight loop, run in a child process by ``kvm.py``.

It creates a VM with 64 KiB of memory, loads a 16-bit real-mode loop
(``mov ecx, N; dec ecx; jnz; hlt``) at 0x1000 and runs it. At hardware speed
20 million iterations take milliseconds; a hypervisor that emulates the guest
one instruction at a time needs tens of seconds, so the parent's deadline
catches it. Prints one JSON line: ``{"api": int, "exit_reason": int, "seconds": float}``.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import mmap
import os
import struct
import sys
import time

KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_CREATE_VCPU = 0xAE41
KVM_SET_USER_MEMORY_REGION = 0x4020AE46
KVM_RUN = 0xAE80
KVM_GET_REGS = 0x8090AE81
KVM_SET_REGS = 0x4090AE82
KVM_GET_SREGS = 0x8138AE83
KVM_SET_SREGS = 0x4138AE84
KVM_EXIT_HLT = 5
ITERATIONS = 20_000_000
MEM_SIZE = 0x10000
CODE_ADDR = 0x1000


def loop_code(iterations: int) -> bytes:
    """mov ecx, iterations; 1: dec ecx; jnz 1b; hlt   (16-bit real mode)"""
    return b"\x66\xb9" + struct.pack("<I", iterations) + b"\x66\x49\x75\xfc\xf4"


def probe(iterations: int = ITERATIONS) -> dict[str, object]:
    kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    api = fcntl.ioctl(kvm, KVM_GET_API_VERSION)
    vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
    mem = mmap.mmap(-1, MEM_SIZE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    mem[CODE_ADDR : CODE_ADDR + 16] = loop_code(iterations).ljust(16, b"\xf4")
    addr = ctypes.addressof(ctypes.c_char.from_buffer(mem))
    region = struct.pack("<IIQQQ", 0, 0, 0, MEM_SIZE, addr)
    fcntl.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region)
    vcpu = fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
    run_size = fcntl.ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE)
    run = mmap.mmap(vcpu, run_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    sregs = bytearray(fcntl.ioctl(vcpu, KVM_GET_SREGS, bytes(0x138)))
    struct.pack_into("<Q", sregs, 0, 0)  # cs.base
    struct.pack_into("<H", sregs, 12, 0)  # cs.selector
    fcntl.ioctl(vcpu, KVM_SET_SREGS, bytes(sregs))
    regs = bytearray(0x90)
    struct.pack_into("<QQ", regs, 16 * 8, CODE_ADDR, 2)  # rip, rflags
    fcntl.ioctl(vcpu, KVM_SET_REGS, bytes(regs))
    started = time.monotonic()
    fcntl.ioctl(vcpu, KVM_RUN, 0)
    seconds = time.monotonic() - started
    exit_reason = struct.unpack_from("<I", run, 8)[0]
    return {"api": api, "exit_reason": exit_reason, "seconds": seconds}


if __name__ == "__main__":
    try:
        print(json.dumps(probe(int(sys.argv[1]) if len(sys.argv) > 1 else ITERATIONS)), flush=True)
    except OSError as exc:
        print(json.dumps({"error": f"{exc.strerror or exc} (errno {exc.errno})"}), flush=True)
        sys.exit(1)
