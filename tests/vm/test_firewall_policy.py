"""The ``--network user`` policy (pure), its nftables text (checked by ``nft -c``), the
``network_allow`` setting, and the forwarding hold (on files of the test's own)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.config import load_settings
from vmrunner.errors import ConfigError
from vmrunner.vm import firewall
from vmrunner.vm.forwarding import Forwarding

A = ipaddress.ip_address
HOST = (A("192.0.2.10"), A("10.1.2.3"), A("2001:db8::10"))
POLICY = firewall.Policy.build(HOST, ("10.9.0.0/16", "169.254.169.254/32"), (A("10.255.255.53"),))


@pytest.mark.parametrize(
    ("addr", "port", "allowed"),
    [
        ("93.184.216.34", 443, True),  # a global address
        ("2606:4700::1111", 443, True),
        ("192.0.2.10", 80, False),  # the host's own address, even though not private
        ("10.1.2.3", 80, False),  # a host address inside no allowed range
        ("2001:db8::10", 22, False),
        ("127.0.0.1", 5432, False),
        ("::1", 5432, False),
        ("169.254.169.254", 80, True),  # listed in the allow-list
        ("169.254.169.253", 80, False),
        ("fe80::1", 80, False),
        ("10.9.4.4", 80, True),  # allowed range
        ("10.8.4.4", 80, False),
        ("172.16.0.1", 80, False),
        ("192.168.1.1", 80, False),
        ("100.64.0.1", 80, False),
        ("100.96.0.2", 80, False),  # another VM's namespace
        ("fd00::1", 80, False),
        ("10.255.255.53", 53, True),  # the host's resolver, for DNS only
        ("10.255.255.53", 80, False),
        ("224.0.0.1", 80, False),
        ("0.0.0.0", 80, False),
    ],
)
def test_policy(addr: str, port: int, allowed: bool) -> None:
    assert POLICY.allows(A(addr), port) is allowed


ADDRS = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))


@given(host=st.lists(ADDRS, max_size=4), allow=st.lists(ADDRS, max_size=4), addr=ADDRS)
def test_the_host_is_never_reachable_whatever_the_allow_list(
    host: list[firewall.Addr], allow: list[firewall.Addr], addr: firewall.Addr
) -> None:
    policy = firewall.Policy.build([*host, addr], [f"{a}/0" for a in allow], [addr])
    assert not policy.allows(addr, 53)


@given(addr=ADDRS, port=st.integers(0, 65535))
def test_without_an_allow_list_exactly_global_ranges_are_reachable(
    addr: firewall.Addr, port: int
) -> None:
    blocked = any(addr in n for n in firewall.BLOCKED if n.version == addr.version)
    assert firewall.Policy().allows(addr, port) is not blocked


@pytest.mark.skipif(os.geteuid() != 0, reason="nft -c needs CAP_NET_ADMIN")
@pytest.mark.parametrize("policy", [firewall.Policy(), POLICY])
def test_rulesets_are_valid_nftables(policy: firewall.Policy) -> None:
    net = ipaddress.ip_network("100.96.3.4/30")
    for text in (
        firewall.namespace_ruleset(policy),
        firewall.host_ruleset(policy, "vmrunner_check", "vmrcheckh", net),
    ):
        proc = subprocess.run(["nft", "-c", "-f", "-"], input=text.encode(), capture_output=True)
        assert proc.returncode == 0, proc.stderr.decode() + text


def test_resolvers_leave_out_loopback(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# x\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\n")
    assert firewall.resolvers(conf) == (A("10.0.0.2"), A("fe80::1"))
    assert firewall.resolvers(tmp_path / "missing") == ()


def test_network_allow_setting(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('network_allow = ["10.1.0.0/16", "169.254.169.254", "fd00::1/8"]\n')
    settings = load_settings(env={"VMRUNNER_CONFIG": str(cfg), "VMRUNNER_HOME": str(tmp_path)})
    assert settings.network_allow == ("10.1.0.0/16", "169.254.169.254/32", "fd00::/8")
    cfg.write_text('network_allow = ["10.1.0.0/16", "intranet"]\n')
    with pytest.raises(ConfigError, match="network_allow: 'intranet'"):
        load_settings(env={"VMRUNNER_CONFIG": str(cfg), "VMRUNNER_HOME": str(tmp_path)})
    cfg.write_text('network_allow = "10.0.0.0/8"\n')
    with pytest.raises(ConfigError, match="list"):
        load_settings(env={"VMRUNNER_CONFIG": str(cfg), "VMRUNNER_HOME": str(tmp_path)})


def _forwarding(tmp_path: Path, value: str) -> Forwarding:
    (tmp_path / "netns").mkdir()
    sysctl = tmp_path / "ip_forward"
    sysctl.write_text(value + "\n")
    return Forwarding(sysctl, tmp_path / "run" / "state.json", tmp_path / "netns")


def _ns(fwd: Forwarding, name: str, exists: bool = True) -> None:
    path = fwd.netns_dir / name
    path.touch() if exists else path.unlink()


def test_forwarding_is_restored_when_the_last_vm_goes(tmp_path: Path) -> None:
    fwd = _forwarding(tmp_path, "0")
    for name in ("a", "b"):
        _ns(fwd, name)
        fwd.hold(name)
        assert fwd.sysctl.read_text() == "1\n"
    fwd.release("a")
    assert fwd.sysctl.read_text() == "1\n"  # b still needs it
    fwd.release("a")  # idempotent
    fwd.release("b")
    assert fwd.sysctl.read_text() == "0\n"
    assert not fwd.state.exists()


def test_a_killed_vms_hold_does_not_pin_forwarding_on(tmp_path: Path) -> None:
    fwd = _forwarding(tmp_path, "0")
    _ns(fwd, "killed")
    fwd.hold("killed")
    _ns(fwd, "killed", exists=False)  # its namespace went (gc, or reboot) without a release
    _ns(fwd, "next")
    fwd.hold("next")
    fwd.release("next")
    assert fwd.sysctl.read_text() == "0\n"


def test_forwarding_that_was_on_stays_on(tmp_path: Path) -> None:
    fwd = _forwarding(tmp_path, "1")
    _ns(fwd, "a")
    fwd.hold("a")
    fwd.release("a")
    assert fwd.sysctl.read_text() == "1\n"
    assert not fwd.state.exists()
