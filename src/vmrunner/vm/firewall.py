"""The firewall of ``--network user``: the guest reaches the outside world only.

QEMU's user-mode network (slirp) turns the guest's connections into ordinary sockets of
the QEMU process, which runs in the VM's own network namespace (:mod:`.netns`). Two
nftables tables, one per VM (so VMs never share, replace or race on a table), decide
where those sockets may go:

* in the VM's namespace (it goes with the namespace): the ``output`` hook rejects the
  host's addresses, loopback, link-local, private and other non-global ranges, unless the
  ``network_allow`` setting lists the destination (host addresses are never allowed);
* on the host, table ``vmrunner_<token>``: the ``input`` hook drops everything arriving from
  the VM's veth (so no host address is reachable, even one added after the VM started), the
  ``forward`` hook repeats the range policy for traffic leaving through the host and lets
  into the VM's veth only replies, and ``postrouting`` masquerades the VM's subnet.

The host's DNS resolvers (``/etc/resolv.conf``) are reachable on port 53 only, so that
slirp's DNS proxy (10.0.2.3) works even when the resolver has a private address.
Pure: this module builds rule text; :mod:`.netns` loads it with ``nft``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address

# Destinations a guest may not reach unless allowed: "this host", loopback, link-local
# (cloud metadata at 169.254.169.254), private and shared (CGNAT, vmrunner's own veth
# pool) ranges, multicast and broadcast.
BLOCKED: tuple[Net, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "::ffff:0:0/96", "fc00::/7", "fe80::/10", "ff00::/8",
    )
)  # fmt: skip
# Never reachable, whatever the allow-list says.
ALWAYS_BLOCKED: tuple[Net, ...] = tuple(
    ipaddress.ip_network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "::/128", "::1/128")
)
REJECT = "reject with icmpx type admin-prohibited"


def resolvers(resolv_conf: Path = Path("/etc/resolv.conf")) -> tuple[Addr, ...]:
    """The host's DNS resolvers (``nameserver`` lines), loopback ones left out: those are
    the host's own and stay unreachable."""
    found: list[Addr] = []
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return ()
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                addr = ipaddress.ip_address(parts[1].split("%")[0])
            except ValueError:
                continue
            if not addr.is_loopback and addr not in found:
                found.append(addr)
    return tuple(found)


@dataclass(frozen=True)
class Policy:
    """Where one VM's traffic may go. ``host`` are the host's own addresses (never
    reachable), ``allow`` the networks of the ``network_allow`` setting, ``dns`` the
    resolvers reachable on port 53."""

    host: tuple[Addr, ...] = ()
    allow: tuple[Net, ...] = ()
    dns: tuple[Addr, ...] = ()

    @classmethod
    def build(cls, host: Iterable[Addr], allow: Iterable[str], dns: Iterable[Addr]) -> Policy:
        return cls(
            host=tuple(sorted(set(host), key=_addr_key)),
            allow=tuple(ipaddress.ip_network(a, strict=False) for a in allow),
            dns=tuple(sorted(set(dns) - set(host), key=_addr_key)),
        )

    def allows(self, addr: Addr, port: int = 0) -> bool:
        """Whether the guest may open a connection to ``addr``:``port`` (the rules' meaning)."""
        if addr in self.host or any(addr in n for n in ALWAYS_BLOCKED):
            return False
        if addr in self.dns and port == 53:
            return True
        if any(addr in n for n in self.allow if n.version == addr.version):
            return True
        return not any(addr in n for n in BLOCKED if n.version == addr.version)


def _addr_key(a: Addr) -> tuple[int, int]:
    return (a.version, int(a))


def _set(name: str, family: int, elements: Iterable[object]) -> str:
    kind = "ipv4_addr" if family == 4 else "ipv6_addr"
    items = ", ".join(str(e) for e in elements)
    body = f"    type {kind}; flags interval; auto-merge;\n"
    if items:
        body += f"    elements = {{ {items} }}\n"
    return f"  set {name}{family} {{\n{body}  }}\n"


def _sets(policy: Policy) -> str:
    """The sets both tables match on: host, always, dns, allow and blocked, per family."""
    always = [n for n in ALWAYS_BLOCKED]
    text = ""
    for fam in (4, 6):
        text += _set("host", fam, [a for a in policy.host if a.version == fam])
        text += _set("always", fam, [n for n in always if n.version == fam])
        text += _set("dns", fam, [a for a in policy.dns if a.version == fam])
        text += _set("allow", fam, [n for n in policy.allow if n.version == fam])
        text += _set("blocked", fam, [n for n in BLOCKED if n.version == fam])
    return text


def _verdicts(match: str) -> list[str]:
    """The policy as rules, in order: first match decides (``match`` prefixes each)."""
    rules = []
    for fam, ip in ((4, "ip"), (6, "ip6")):
        rules += [
            f"{match}{ip} daddr @host{fam} {REJECT}",
            f"{match}{ip} daddr @always{fam} {REJECT}",
            f"{match}{ip} daddr @dns{fam} meta l4proto {{ tcp, udp }} th dport 53 accept",
            f"{match}{ip} daddr @allow{fam} accept",
            f"{match}{ip} daddr @blocked{fam} {REJECT}",
        ]
    return rules


def _chain(name: str, hook: str, rules: Iterable[str], kind: str = "filter") -> str:
    priority = "srcnat" if kind == "nat" else "filter"
    lines = "".join(f"    {r}\n" for r in rules)
    return (
        f"  chain {name} {{\n    type {kind} hook {hook} priority {priority}; policy accept;\n"
        f"{lines}  }}\n"
    )


def namespace_ruleset(policy: Policy, table: str = "vmrunner") -> str:
    """The table loaded inside the VM's namespace: every socket QEMU opens there passes it."""
    return f"table inet {table} {{\n{_sets(policy)}{_chain('output', 'output', _verdicts(''))}}}\n"


def host_ruleset(policy: Policy, table: str, host_if: str, subnet: Net) -> str:
    """The VM's own table on the host: nothing from ``host_if`` reaches the host itself,
    forwarded traffic follows ``policy``, only replies enter ``host_if``, and ``subnet``
    is masqueraded when it leaves through a non-vmrunner interface."""
    q = f'"{host_if}"'
    forward = [
        *_verdicts(f"iifname {q} "),
        f"oifname {q} ct state established,related accept",
        f"oifname {q} drop",
    ]
    nat = [f'ip saddr {subnet} oifname != "vmr*" masquerade']
    return (
        f"table inet {table} {{\n{_sets(policy)}"
        f"{_chain('input', 'input', [f'iifname {q} drop'])}"
        f"{_chain('forward', 'forward', forward)}"
        f"{_chain('postrouting', 'postrouting', nat, kind='nat')}}}\n"
    )
