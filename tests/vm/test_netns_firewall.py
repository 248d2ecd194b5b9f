"""``--network user`` is a firewall, not a route: real namespaces, real nftables, real sockets.

slirp turns the guest's connections into sockets of the QEMU process in the VM's namespace,
so a probe process run in that namespace (``nsenter``) opens exactly the connections a
guest would. The "outside world" and the "metadata service" are a namespace this test
makes (``vt<token>t``, at 198.51.100.2 and the link-local 169.254.213.254); the host's own
address is the veth the test adds on the host (198.51.100.1) and the VM's veth host side.
No packet leaves the machine. Needs root (CI runs as root).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import vmrunner
from vmrunner.vm import netns
from vmrunner.vm.forwarding import Forwarding
from vmrunner.vm.records import new_record_dir, reap_record

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

OUTSIDE = "198.51.100.2"  # TEST-NET-2, only inside the test's namespace
HOST_SIDE = "198.51.100.1"  # on the host: one of the host's own addresses
LINK_LOCAL = "169.254.213.254"  # a metadata-like address, inside the test's namespace
PROBE = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    s.sendall(b'ping')
    print('connected', s.recv(100).decode())
except OSError as e:
    print('blocked', type(e).__name__)
"""
SERVER = """
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 8080)); s.listen()
print('ready', flush=True)
while True:
    c, _ = s.accept()
    c.recv(100); c.sendall(b'outside'); c.close()
"""


@dataclass
class FakeRecord:
    """A VM record without a VM (``netns.Recorded``)."""

    path: Path
    extra: dict[str, str] = field(default_factory=dict)

    def save(self) -> None:
        pass


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=20).stdout


@pytest.fixture
def outside() -> Iterator[None]:
    """A namespace standing for the world (and a metadata service), routed from the host."""
    tok = os.urandom(3).hex()
    ns, host_if, peer = f"vt-{tok}", f"vt{tok}h", f"vt{tok}t"
    sh("ip", "netns", "add", ns)
    server: subprocess.Popen[str] | None = None
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", peer)
        sh("ip", "link", "set", peer, "netns", ns)
        sh("ip", "addr", "add", f"{HOST_SIDE}/30", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "-n", ns, "addr", "add", f"{OUTSIDE}/30", "dev", peer)
        sh("ip", "-n", ns, "addr", "add", f"{LINK_LOCAL}/32", "dev", peer)
        sh("ip", "-n", ns, "link", "set", peer, "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", HOST_SIDE)
        # replace: the previous test's route may outlive it while its namespace is torn down
        sh("ip", "route", "replace", f"{LINK_LOCAL}/32", "via", OUTSIDE, "dev", host_if)
        server = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", SERVER],
            stdout=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        assert server.stdout is not None and server.stdout.readline() == "ready\n"
        yield
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", host_if], check=False)  # now, with its route
        subprocess.run(["ip", "netns", "del", ns], check=False)


@pytest.fixture
def host_listener() -> Iterator[tuple[int, list[bytes]]]:
    """A listener on every host address (0.0.0.0): what a guest must never reach."""
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen()
    hits: list[bytes] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                hits.append(conn.recv(100) or b"(connected)")
                conn.close()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield server.getsockname()[1], hits
    server.shutdown(socket.SHUT_RDWR)
    server.close()
    t.join(5)


@contextlib.contextmanager
def vm_namespace(tmp_path: Path, allow: tuple[str, ...] = ()) -> Iterator[FakeRecord]:
    rec = FakeRecord(tmp_path / f"vm-x-{os.urandom(3).hex()}")
    try:
        netns.setup(rec, allow)
        yield rec
    finally:
        netns.cleanup(rec)


def probe(rec: FakeRecord, addr: str, port: int, timeout: float = 3.0) -> str:
    argv = [
        "nsenter", f"--net=/run/netns/{rec.extra['netns']}", "--",
        sys.executable, "-c", PROBE, addr, str(port), str(timeout),
    ]  # fmt: skip
    return sh(*argv).strip()


def veth_host_ip(rec: FakeRecord) -> str:
    token = rec.path.name.rsplit("-", 1)[-1]
    out = sh("ip", "-o", "-4", "addr", "show", "dev", f"vmr{token}h")
    return str(ipaddress.ip_interface(out.split()[3]).ip)


@pytest.mark.usefixtures("outside")
def test_guest_reaches_the_outside_but_no_address_of_the_host(
    tmp_path: Path, host_listener: tuple[int, list[bytes]]
) -> None:
    port, hits = host_listener
    with vm_namespace(tmp_path) as rec:
        assert probe(rec, OUTSIDE, 8080, 10.0) == "connected outside"
        for addr in (veth_host_ip(rec), HOST_SIDE, "127.0.0.1"):
            assert probe(rec, addr, port).startswith("blocked"), addr
    assert hits == []


@pytest.mark.usefixtures("outside")
def test_link_local_is_blocked_unless_allowed_and_the_host_never(
    tmp_path: Path, host_listener: tuple[int, list[bytes]]
) -> None:
    port, hits = host_listener
    allow = (f"{LINK_LOCAL}/32", f"{HOST_SIDE}/32")  # allowing a host address has no effect
    with vm_namespace(tmp_path) as plain, vm_namespace(tmp_path, allow) as allowed:
        assert probe(plain, LINK_LOCAL, 8080).startswith("blocked")
        assert probe(allowed, LINK_LOCAL, 8080, 10.0) == "connected outside"
        assert probe(allowed, HOST_SIDE, port).startswith("blocked")
        assert probe(allowed, veth_host_ip(allowed), port).startswith("blocked")
        # one VM's namespace is not reachable from another's (100.64/10 is blocked)
        assert probe(allowed, veth_host_ip(plain), port).startswith("blocked")
    assert hits == []


@pytest.mark.usefixtures("outside")
def test_the_host_table_alone_still_blocks(
    tmp_path: Path, host_listener: tuple[int, list[bytes]]
) -> None:
    port, hits = host_listener
    with vm_namespace(tmp_path) as rec:
        sh(
            "nsenter", f"--net=/run/netns/{rec.extra['netns']}", "--",
            "nft", "delete", "table", "inet", "vmrunner",
        )  # fmt: skip
        assert probe(rec, OUTSIDE, 8080, 10.0) == "connected outside"
        assert probe(rec, LINK_LOCAL, 8080).startswith("blocked")
        for addr in (veth_host_ip(rec), HOST_SIDE):
            assert probe(rec, addr, port, 2.0).startswith("blocked"), addr
    assert hits == []


@pytest.mark.usefixtures("outside")
def test_vms_do_not_share_a_table_and_cleanup_leaves_nothing(tmp_path: Path) -> None:
    with vm_namespace(tmp_path) as first:
        with vm_namespace(tmp_path) as second:
            assert first.extra["nft_table"] != second.extra["nft_table"]
        # the second VM's teardown did not take the first one's NAT or firewall with it
        assert probe(first, OUTSIDE, 8080, 10.0) == "connected outside"
        assert probe(first, LINK_LOCAL, 8080).startswith("blocked")
        assert second.extra["netns"] not in netns.FORWARDING.state.read_text()
        assert first.extra["netns"] in netns.FORWARDING.state.read_text()
    tables = sh("nft", "list", "tables")
    for rec in (first, second):
        assert rec.extra["nft_table"] not in tables
        assert not Path(f"/run/netns/{rec.extra['netns']}").exists()


def test_gc_reaping_a_record_removes_its_namespace_and_table(tmp_path: Path) -> None:
    rec = new_record_dir(tmp_path / "vms")
    netns.setup(rec)
    assert Path(f"/run/netns/{rec.extra['netns']}").exists()
    reap_record(rec)  # what gc does once the owner is gone
    assert not Path(f"/run/netns/{rec.extra['netns']}").exists()
    assert rec.extra["nft_table"] not in sh("nft", "list", "tables")
    state = Forwarding().state
    assert not state.exists() or rec.extra["netns"] not in state.read_text()


@pytest.mark.vm
@pytest.mark.usefixtures("outside", "debian_image")
def test_a_real_guest_reaches_the_outside_namespace_but_not_the_host(
    vm_env: dict[str, str], host_listener: tuple[int, list[bytes]]
) -> None:
    port, hits = host_listener
    script = (
        PROBE.replace("sys.argv[1]", "a").replace("sys.argv[2]", "p").replace("sys.argv[3]", "5")
    )
    loop = f"for a, p in (({OUTSIDE!r}, 8080), ({HOST_SIDE!r}, {port}), ('10.0.2.2', {port})):"
    body = "\n".join(" " + line for line in script.strip().splitlines())
    proc = vmrunner(
        ["exec", "--accel", "tcg", "--quiet", "--network", "user", "--",
         "python3", "-c", f"{loop}\n{body}"],
        vm_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0] == "connected outside", lines
    assert [line.split()[0] for line in lines[1:]] == ["blocked", "blocked"], lines
    assert hits == []
