"""User-mode networking that reaches the outside world only.

QEMU's user-mode network (slirp) maps the guest's gateway address to the host's
127.0.0.1, which would let a job reach vmrunner's API or database. So with
``--network user`` QEMU runs in a network namespace of its own: slirp's
"loopback" is then the namespace's empty loopback. The namespace reaches the
outside world through a veth pair, forwarded and masqueraded by the host, behind
the VM's own firewall (:mod:`.firewall`): never the host's addresses, link-local,
private or other non-global ranges unless the ``network_allow`` setting lists them.
IPv4 forwarding is held only while VMs need it (:mod:`.forwarding`).

Each namespace and host table is named in the VM's record, so gc removes them after a
crash. Needs root, ``ip`` (iproute2) and ``nft`` (nftables): without ``nft`` there is no
firewall, so the VM does not start.

Below :mod:`.records` (whose reaping calls :func:`cleanup`): the record is anything
shaped like :class:`Recorded`, so this module does not import ``records``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from vmrunner.errors import VmStartError
from vmrunner.procs import require_tool, run_tool
from vmrunner.vm import firewall
from vmrunner.vm.forwarding import Forwarding

POOL = ipaddress.IPv4Network("100.96.0.0/16")
FORWARDING = Forwarding()


class Recorded(Protocol):
    """What this module needs of a VM's on-disk record (``records.VmRecord`` is one):
    its directory (whose name ends in a unique token), its ``extra`` fields, where the
    namespace name is kept, and ``save`` to write them before the namespace exists."""

    path: Path
    extra: dict[str, str]

    def save(self) -> None: ...


def _ip(*args: str) -> str:
    return run_tool(
        [require_tool("ip", "apt-get install iproute2"), *args],
        timeout=10,
        what="ip " + " ".join(args[:3]),
    )


def _nft(*args: str, ruleset: str | None = None, netns: str | None = None) -> str:
    nft = require_tool("nft", "apt-get install nftables")
    argv = [nft, *args] if netns is None else [*_in_netns(netns), nft, *args]
    data = None if ruleset is None else ruleset.encode()
    return run_tool(argv, timeout=10, what="nft " + " ".join(args[:3]), input_bytes=data)


def _in_netns(name: str) -> list[str]:
    return [require_tool("nsenter", "apt-get install util-linux"), f"--net=/run/netns/{name}", "--"]


def host_addresses() -> list[firewall.Addr]:
    """Every address on the host's interfaces (both families), as ``ip`` lists them now."""
    found: list[firewall.Addr] = []
    for line in _ip("-o", "addr", "show").splitlines():
        parts = line.split()
        for kind in ("inet", "inet6"):
            if kind in parts:
                found.append(ipaddress.ip_interface(parts[parts.index(kind) + 1]).ip)
    return found


def _free_subnet() -> ipaddress.IPv4Network:
    used = {
        ipaddress.ip_network(f"{a}/30", strict=False) for a in host_addresses() if a.version == 4
    }
    subnets: list[ipaddress.IPv4Network] = list(POOL.subnets(new_prefix=30))
    return next(s for s in random.sample(subnets, 64) if s not in used)


def setup(rec: Recorded, allow: Sequence[str] = ()) -> str:
    """Create the namespace, veth pair and firewall for ``rec``; return the namespace name.

    ``allow``: networks (``network_allow``) the guest may reach although they are private
    or link-local; the host's own addresses stay unreachable whatever it says.
    """
    if os.geteuid() != 0:
        raise VmStartError("--network user needs root (it creates a network namespace for QEMU)")
    require_tool("nft", "apt-get install nftables (--network user needs it for its firewall)")
    token = rec.path.name.rsplit("-", 1)[-1]
    name, table = f"vmr-{token}", f"vmrunner_{token}"
    host_if, guest_if = f"vmr{token}h", f"vmr{token}g"
    rec.extra.update(netns=name, nft_table=table)
    rec.save()
    subnet = _free_subnet()
    host_ip, guest_ip = list(subnet.hosts())[:2]
    _ip("netns", "add", name)
    _ip("link", "add", host_if, "type", "veth", "peer", "name", guest_if)
    _ip("link", "set", guest_if, "netns", name)
    policy = firewall.Policy.build([*host_addresses(), host_ip], allow, firewall.resolvers())
    _nft("-f", "-", ruleset=firewall.namespace_ruleset(policy), netns=name)
    _nft("-f", "-", ruleset=firewall.host_ruleset(policy, table, host_if, subnet))
    _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
    _ip("link", "set", host_if, "up")
    _ip("-n", name, "link", "set", "lo", "up")
    _ip("-n", name, "addr", "add", f"{guest_ip}/30", "dev", guest_if)
    _ip("-n", name, "link", "set", guest_if, "up")
    _ip("-n", name, "route", "add", "default", "via", str(host_ip))
    FORWARDING.hold(name)
    return name


def open_namespace(name: str) -> int:
    """A descriptor of network namespace ``name`` (close-on-exec), for QEMU's child to
    enter (``sandbox.enter_netns``) before it drops its privileges."""
    try:
        return os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise VmStartError(f"cannot open network namespace {name}: {exc}") from exc


def cleanup(rec: Recorded) -> None:
    """Delete ``rec``'s namespace (its veth pair and namespace table go with it) and its
    host table, and release forwarding. Idempotent; never raises."""
    name = rec.extra.get("netns")
    if not name:
        return
    if Path(f"/run/netns/{name}").exists():
        with contextlib.suppress(Exception):
            _ip("netns", "del", name)
    table = rec.extra.get("nft_table")
    if table:
        with contextlib.suppress(Exception):
            _nft("delete", "table", "inet", table)
    with contextlib.suppress(Exception):
        FORWARDING.release(name)
