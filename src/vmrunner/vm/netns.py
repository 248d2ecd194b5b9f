"""User-mode networking that cannot reach the host's loopback.

QEMU's user-mode network (slirp) maps the guest's gateway address to the host's
127.0.0.1, which would let a job reach vmrunner's API or database. So with
``--network user`` QEMU runs in a network namespace of its own: slirp's
"loopback" is then the namespace's empty loopback. The namespace reaches the
outside world through a veth pair with masquerading (nftables) on the host.

Each namespace is named in the VM's record, so gc removes it after a crash.
Needs root, ``ip`` (iproute2) and, for outbound traffic, ``nft`` (nftables).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
from pathlib import Path

from vmrunner.errors import VmStartError
from vmrunner.procs import require_tool, run_tool
from vmrunner.vm.records import VmRecord

POOL = ipaddress.IPv4Network("100.96.0.0/16")
NFT_TABLE = "vmrunner"


def _ip(*args: str) -> str:
    return run_tool(
        [require_tool("ip", "apt-get install iproute2"), *args],
        timeout=10,
        what="ip " + " ".join(args[:3]),
    )


def _used_subnets() -> set[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    used: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
    for line in _ip("-o", "-4", "addr", "show").splitlines():
        parts = line.split()
        if "inet" in parts:
            iface = ipaddress.ip_interface(parts[parts.index("inet") + 1])
            used.add(ipaddress.ip_network(f"{iface.ip}/30", strict=False))
    return used


def _ensure_nat() -> None:
    nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    if nft is None:
        return  # no outbound NAT: the guest's network stays local to its namespace
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    ruleset = (
        f"table ip {NFT_TABLE} {{\n"
        "  chain postrouting {\n"
        "    type nat hook postrouting priority srcnat; policy accept;\n"
        f'    ip saddr {POOL} oifname != "vmr*" masquerade\n'
        "  }\n"
        "}\n"
    )
    with contextlib.suppress(Exception):
        run_tool([nft, "delete", "table", "ip", NFT_TABLE], timeout=10, what="nft delete table")
    run_tool([nft, "-f", "-"], timeout=10, what="nft add NAT", input_bytes=ruleset.encode())


def setup(rec: VmRecord) -> str:
    """Create the namespace and veth pair for ``rec``; return the namespace name."""
    if os.geteuid() != 0:
        raise VmStartError("--network user needs root (it creates a network namespace for QEMU)")
    token = rec.path.name.rsplit("-", 1)[-1]
    name = f"vmr-{token}"
    host_if, guest_if = f"vmr{token}h", f"vmr{token}g"
    rec.extra["netns"] = name
    rec.save()
    used = _used_subnets()
    subnets: list[ipaddress.IPv4Network] = list(POOL.subnets(new_prefix=30))
    subnet = next(s for s in random.sample(subnets, 64) if s not in used)
    host_ip, guest_ip = list(subnet.hosts())[:2]
    _ip("netns", "add", name)
    _ip("link", "add", host_if, "type", "veth", "peer", "name", guest_if)
    _ip("link", "set", guest_if, "netns", name)
    _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
    _ip("link", "set", host_if, "up")
    _ip("-n", name, "link", "set", "lo", "up")
    _ip("-n", name, "addr", "add", f"{guest_ip}/30", "dev", guest_if)
    _ip("-n", name, "link", "set", guest_if, "up")
    _ip("-n", name, "route", "add", "default", "via", str(host_ip))
    _ensure_nat()
    return name


def wrap(argv: list[str], rec: VmRecord) -> list[str]:
    """Set up ``rec``'s namespace and return ``argv`` wrapped to run inside it."""
    name = setup(rec)
    nsenter = require_tool("nsenter", "apt-get install util-linux")
    return [nsenter, f"--net=/run/netns/{name}", "--", *argv]


def cleanup(rec: VmRecord) -> None:
    """Delete ``rec``'s namespace (its veth pair goes with it). Idempotent."""
    name = rec.extra.get("netns")
    if not name:
        return
    if Path(f"/run/netns/{name}").exists():
        with contextlib.suppress(Exception):
            _ip("netns", "del", name)
