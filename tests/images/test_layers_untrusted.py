"""Recipes from untrusted repositories: run commands run as an unprivileged host uid (root of
a user namespace mapped to root's subordinate range), have no host network, cannot read or
write the host's root-only files, change the host's kernel settings, mount, make devices or
leave the chroot; ``files:`` and units land in the image even through its symlinks
(``/var/run -> /run``), never on the host; a package's maintainer scripts run mapped too.

Every probe is harmless should it succeed: it writes the host's own hostname back, mounts a
tmpfs inside the root, chroots into a directory of the root, opens the host's resolv.conf for
appending without writing, or reads a file the test made."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vmrunner.errors import ImageBuildError
from vmrunner.images import layers
from vmrunner.images.builder import mmdebstrap
from vmrunner.images.idmap import build_range
from vmrunner.images.layers import apply_layers, resolve_in_root, run_command, write_file
from vmrunner.images.recipe import FileSpec, Recipe, UnitSpec

BUSYBOX = Path("/usr/bin/busybox")
APPLETS = ("sh", "cat", "echo", "mkdir", "chroot", "mount", "mknod", "true", "ip", "ls", "id",
           "touch", "chown", "chmod")  # fmt: skip

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not BUSYBOX.exists() or shutil.which("unshare") is None,
    reason="run commands need root (namespaces, chroot), busybox and unshare",
)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    for d in ("etc", "run", "proc", "sys", "dev", "tmp", "var"):
        (root / d).mkdir()
    (root / "var/run").symlink_to("/run")  # as in Debian
    return root


def _probe(rootfs: Path, tmp_path: Path, script: str) -> str:
    run_command(rootfs, f"{{ {script}; }} > /tmp/out 2>&1 || true", tmp_path / "log")
    return (rootfs / "tmp/out").read_text()


@needs_root
def test_a_run_command_has_loopback_only(rootfs: Path, tmp_path: Path) -> None:
    host = {
        line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]
    }
    assert host - {"lo"}, "the host has network interfaces"
    seen = _probe(rootfs, tmp_path, "cat /proc/net/dev")
    names = {line.split(":")[0].strip() for line in seen.splitlines()[2:]}
    assert names == {"lo"}, seen


@needs_root
@pytest.mark.parametrize(
    ("script", "done"),
    [
        ("cat /proc/sys/kernel/hostname > /tmp/h && cat /tmp/h > /proc/sys/kernel/hostname && echo DONE", "DONE"),
        ("mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo DONE", "DONE"),
        ("mknod /tmp/disk b 7 0 && echo DONE", "DONE"),
        ("mkdir -p /tmp/jail && chroot /tmp/jail /bin/true && echo DONE", "DONE"),
    ],
    ids=["sysctl", "mount", "mknod", "chroot"],
)  # fmt: skip
def test_a_run_command_cannot_reach_past_the_image(
    rootfs: Path, tmp_path: Path, script: str, done: str
) -> None:
    (rootfs / "tmp/jail/bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, rootfs / "tmp/jail/bin/true")
    assert done not in _probe(rootfs, tmp_path, script)
    assert socket.gethostname()  # (the host's name was at most written back unchanged)


@needs_root
def test_a_run_command_still_configures_the_image_as_root(rootfs: Path, tmp_path: Path) -> None:
    (rootfs / "etc/owned").write_text("x")
    (rootfs / "etc/owned").chmod(0o600)
    run_command(
        rootfs, "echo ok >> /etc/owned; mkdir -p /etc/app; echo y > /etc/app/conf", tmp_path / "log"
    )
    assert (rootfs / "etc/owned").read_text() == "xok\n"
    assert (rootfs / "etc/app/conf").read_text() == "y\n"


def test_files_follow_the_images_symlinks_inside_the_root(rootfs: Path, tmp_path: Path) -> None:
    host_side = tmp_path / "host-side"
    host_side.mkdir()
    (rootfs / "etc/out").symlink_to(host_side)  # absolute: the host's path, were it followed
    (rootfs / "etc/up").symlink_to("../../../../../../../..")  # '..' stops at the root
    for guest, lands in [
        ("/var/run/app.pid", rootfs / "run/app.pid"),
        ("/etc/out/x", rootfs / str(host_side).lstrip("/") / "x"),
        ("/etc/up/etc/y", rootfs / "etc/y"),
    ]:
        write_file(rootfs, FileSpec(path=guest, content="c\n"), tmp_path / "log")
        assert lands.read_text() == "c\n", guest
    assert list(host_side.iterdir()) == []
    assert resolve_in_root(rootfs, "/var/run/x") == rootfs / "run/x"


def test_a_symlink_loop_or_the_root_itself_is_refused(rootfs: Path) -> None:
    (rootfs / "etc/a").symlink_to("b")
    (rootfs / "etc/b").symlink_to("a")
    with pytest.raises(ImageBuildError, match="too many symlinks"):
        resolve_in_root(rootfs, "/etc/a/x")
    assert resolve_in_root(rootfs, "/etc/../../x") == rootfs / "x"  # normalised, as in the guest
    with pytest.raises(ImageBuildError, match="not a file path inside the image"):
        resolve_in_root(rootfs, "/etc/..")


FAKE_SYSTEMCTL = """#!/bin/sh
cat /proc/net/dev > /tmp/systemctl-saw
mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo MOUNTED >> /tmp/systemctl-saw
true
"""


@needs_root
def test_image_programs_replaced_by_files_run_in_the_sandbox(rootfs: Path, tmp_path: Path) -> None:
    """``files:`` replaces systemctl; the unit enabling that follows runs it, and it gets
    neither the host's network nor the right to mount. Owners are still applied there."""
    (rootfs / "etc/passwd").write_text("root:x:0:0::/:/bin/sh\nalice:x:1000:1000::/:/bin/sh\n")
    (rootfs / "etc/group").write_text("root:x:0:\nalice:x:1000:\n")
    recipe = Recipe(
        name="t",
        files=(
            FileSpec("/bin/systemctl", FAKE_SYSTEMCTL, 0o755),
            FileSpec("/etc/owned-by-alice", "x\n", owner="alice:alice"),
        ),
        units=(UnitSpec("app.service", "[Service]\nExecStart=/bin/true\n", enable=True),),
    )
    apply_layers(rootfs, recipe, tmp_path / "log")
    saw = (rootfs / "tmp/systemctl-saw").read_text()
    assert {line.split(":")[0].strip() for line in saw.splitlines()[2:]} == {"lo"}, saw
    assert "MOUNTED" not in saw
    owned = (rootfs / "etc/owned-by-alice").stat()
    assert (owned.st_uid, owned.st_gid) == (1000, 1000)


@needs_root
def test_a_run_command_is_root_only_inside_its_user_namespace(rootfs: Path, tmp_path: Path) -> None:
    """Its uid 0 is the first id of root's subordinate range on the host; what it creates
    and chowns is stored with the image's own ids (root's files as uid 0), setuid bits kept."""
    (rootfs / "bin/tool").write_text("#!/bin/sh\n")
    (rootfs / "bin/tool").chmod(0o4755)
    run_command(
        rootfs,
        "cat /proc/self/uid_map > /etc/uid_map; id -u > /etc/uid; touch /etc/made; "
        "touch /etc/given; chown 1000:1001 /etc/given; chmod 4750 /etc/given",
        tmp_path / "log",
    )
    ids = build_range()
    assert (rootfs / "etc/uid_map").read_text().split() == ["0", str(ids.uid), str(ids.count)]
    assert ids.uid != 0
    assert (rootfs / "etc/uid").read_text() == "0\n"
    made, given = (rootfs / "etc/made").lstat(), (rootfs / "etc/given").lstat()
    assert (made.st_uid, made.st_gid) == (0, 0)
    assert (given.st_uid, given.st_gid, given.st_mode & 0o7777) == (1000, 1001, 0o4750)
    assert (rootfs / "bin/tool").lstat().st_mode & 0o7777 == 0o4755


@needs_root
def test_a_host_file_only_root_can_read_stays_closed_when_made_reachable(
    rootfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox binds one host file into the image (resolv.conf): were it a file only the
    host's root may read, the run command (root of its own namespace only) cannot read it."""
    secret = tmp_path / "secret"
    secret.write_text("TOP-SECRET\n")
    secret.chmod(0o600)
    monkeypatch.setattr(layers, "HOST_RESOLV_CONF", secret)
    seen = _probe(rootfs, tmp_path, "cat /etc/resolv.conf")
    assert "TOP-SECRET" not in seen and "Permission denied" in seen, seen


@needs_root
def test_a_run_command_cannot_write_the_hosts_resolv_conf(rootfs: Path, tmp_path: Path) -> None:
    """The host's own /etc/resolv.conf, bound into the image, opened for appending (nothing
    is written even should it open): refused."""
    assert layers.HOST_RESOLV_CONF.exists(), "the host has a resolv.conf"
    seen = _probe(rootfs, tmp_path, "sh -c ': >> /etc/resolv.conf' && echo OPENED")
    assert "OPENED" not in seen, seen


POSTINST = """#!/bin/sh
set -e
mkdir -p /var/lib/vmrunner-probe
cat /proc/self/uid_map > /var/lib/vmrunner-probe/uid_map
id -u > /var/lib/vmrunner-probe/uid
env > /var/lib/vmrunner-probe/env
"""


def _local_repo(repo: Path) -> str:
    """A flat apt repository in ``repo`` with one package, ``vmrunner-probe``, whose
    postinst records the uid map and uid it runs with; its source line."""
    pkg = repo / "src"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN/control").write_text(
        "Package: vmrunner-probe\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: vmrunner tests <tests@localhost>\nDescription: records its uid\n"
    )
    (pkg / "DEBIAN/postinst").write_text(POSTINST)
    (pkg / "DEBIAN/postinst").chmod(0o755)
    deb = repo / "vmrunner-probe_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(pkg), str(deb)],
                   check=True, capture_output=True)  # fmt: skip
    control = subprocess.run(["dpkg-deb", "--field", str(deb)], check=True,
                             capture_output=True, text=True).stdout  # fmt: skip
    data = deb.read_bytes()
    (repo / "Packages").write_text(
        f"{control.rstrip()}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
        f"SHA256: {hashlib.sha256(data).hexdigest()}\n\n"
    )
    return f"deb [trusted=yes] file://{repo} ./"


@pytest.fixture
def probe_repo(tmp_path: Path) -> Iterator[str]:
    """The source line of the local repository, served over HTTP on loopback while the test
    lasts (apt hands a ``file://`` package to dpkg through a host path the chroot lacks)."""
    line = _local_repo(tmp_path / "repo")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "repo"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield line.replace(f"file://{tmp_path / 'repo'}", f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@needs_root
@pytest.mark.skipif(shutil.which("mmdebstrap") is None, reason="needs mmdebstrap")
def test_a_packages_maintainer_script_runs_mapped_not_as_the_hosts_root(
    tmp_path: Path, probe_repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recipe's ``sources:`` bring a package whose postinst runs during the bootstrap (a
    real mmdebstrap from Debian's archive and a local repository): it is root inside and
    the first id of root's subordinate range on the host, without vmrunner's environment."""
    monkeypatch.setenv("VMRUNNER_TEST_TOKEN", "not-for-recipes")
    recipe = Recipe(name="t-probe", packages=("vmrunner-probe",), extra_sources=(probe_repo,))
    mmdebstrap(recipe, tmp_path / "base.tar", tmp_path / "log")
    out = tmp_path / "out"
    out.mkdir()
    names = [f"./var/lib/vmrunner-probe/{n}" for n in ("uid_map", "uid", "env")]
    subprocess.run(["tar", "-xf", str(tmp_path / "base.tar"), "-C", str(out), *names], check=True)
    ids = build_range()
    uid_map = (out / names[0]).read_text().split()
    assert uid_map == ["0", str(ids.uid), str(ids.count)] and ids.uid != 0
    assert (out / names[1]).read_text() == "0\n"
    assert "PATH=" in (out / names[2]).read_text()
    assert "not-for-recipes" not in (out / names[2]).read_text()
    owner = (tmp_path / "base.tar").stat()
    assert (owner.st_uid, owner.st_gid) == (0, 0)


@needs_root
def test_a_run_command_gets_none_of_vmrunners_environment(
    rootfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMRUNNER_TEST_TOKEN", "not-for-recipes")
    (rootfs / "bin/env").symlink_to("busybox")
    seen = _probe(rootfs, tmp_path, "env")
    assert "PATH=" in seen and "not-for-recipes" not in seen, seen
