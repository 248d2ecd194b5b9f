"""Recipes from untrusted repositories: run commands have no host network, cannot change the
host's kernel settings, mount, make devices or leave the chroot; ``files:`` and units land in
the image even through its symlinks (``/var/run -> /run``), never on the host.

Every probe is harmless should it succeed: it writes the host's own hostname back, mounts a
tmpfs inside the root, or chroots into a directory of the root."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from vmrunner.errors import ImageBuildError
from vmrunner.images.layers import apply_layers, resolve_in_root, run_command, write_file
from vmrunner.images.recipe import FileSpec, Recipe, UnitSpec

BUSYBOX = Path("/usr/bin/busybox")
APPLETS = ("sh", "cat", "echo", "mkdir", "chroot", "mount", "mknod", "true", "ip", "ls")

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
    (rootfs / "bin/chown").symlink_to("busybox")
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
