"""Recipe run commands through the real layer functions, on a tiny busybox-static root:
/proc, /sys, /dev and the host's resolv.conf inside; no mount ever on the host; the
image unchanged afterwards; cancellation ends every process the command started."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from vmrunner.cancel import CancelToken
from vmrunner.errors import BuildCancelledError, ImageBuildError
from vmrunner.images.layers import apply_layers, resolv_conf_target, run_command
from vmrunner.images.recipe import Recipe

BUSYBOX = Path("/usr/bin/busybox")
APPLETS = ("sh", "cat", "ls", "grep", "test", "sleep", "touch", "readlink", "echo")

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not BUSYBOX.exists() or shutil.which("unshare") is None,
    reason="run commands need root (mount namespaces, chroot), busybox and unshare",
)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A root with a static busybox, and /etc/resolv.conf -> /run/resolv.conf as in our images."""
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    for d in ("etc", "run", "proc", "sys", "dev", "tmp"):
        (root / d).mkdir()
    (root / "etc/resolv.conf").symlink_to("/run/resolv.conf")
    return root


def host_mounts_under(root: Path) -> list[str]:
    """Mount points at or under ``root`` in the host's (this process's) mount table."""
    prefix = str(root.resolve())
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def procs_rooted_in(root: Path) -> list[int]:
    """The processes whose root directory is ``root`` (chrooted into it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "root").readlink() == root.resolve():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its type (and a symlink's target)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = f"-> {p.readlink()}" if p.is_symlink() else ("dir" if p.is_dir() else "file")
    return out


@needs_root
def test_run_commands_see_proc_sys_dev_and_the_hosts_resolv_conf(
    rootfs: Path, tmp_path: Path
) -> None:
    before = tree(rootfs)
    script = (
        "grep '^Name:' /proc/self/status > /tmp/status; ls -l /dev/null > /tmp/null;"
        " test -d /sys/kernel && echo present > /tmp/sys; cat /etc/resolv.conf > /tmp/resolv;"
        " ls /dev/pts > /tmp/pts; readlink /proc/1/exe > /tmp/pid1"
    )
    apply_layers(rootfs, Recipe(name="t", run=(script,)), tmp_path / "build.log")
    out = {f.name: f.read_text() for f in (rootfs / "tmp").iterdir()}
    assert out["status"] == "Name:\tgrep\n"
    assert out["null"].startswith("c") and out["null"].rstrip().endswith("/dev/null")
    assert out["sys"] == "present\n"
    assert out["resolv"] == Path("/etc/resolv.conf").read_text()
    assert "ptmx" in out["pts"]
    assert out["pid1"] == "/bin/busybox\n"  # its own PID namespace: the command is PID 1
    # The image is as it was, apart from what the command wrote; nothing is mounted on the host.
    after = {k: v for k, v in tree(rootfs).items() if not k.startswith("tmp/")}
    assert after == before
    assert (rootfs / "etc/resolv.conf").readlink() == Path("/run/resolv.conf")
    assert not (rootfs / "run/resolv.conf").exists()
    assert host_mounts_under(rootfs) == []


@needs_root
def test_a_resolv_conf_file_in_the_image_is_kept(rootfs: Path, tmp_path: Path) -> None:
    (rootfs / "etc/resolv.conf").unlink()
    (rootfs / "etc/resolv.conf").write_text("nameserver 192.0.2.1\n")
    run_command(rootfs, "cat /etc/resolv.conf > /tmp/seen", tmp_path / "log")
    assert (rootfs / "tmp/seen").read_text() == Path("/etc/resolv.conf").read_text()
    assert (rootfs / "etc/resolv.conf").read_text() == "nameserver 192.0.2.1\n"


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("/run/resolv.conf", "/run/resolv.conf"),
        ("../run/systemd/resolve/stub-resolv.conf", "/run/systemd/resolve/stub-resolv.conf"),
        ("resolv.conf.real", "/etc/resolv.conf.real"),
        (None, "/etc/resolv.conf"),
    ],
)
def test_resolv_conf_target_follows_the_images_link(
    tmp_path: Path, link: str | None, expected: str
) -> None:
    (tmp_path / "etc").mkdir()
    if link is None:
        (tmp_path / "etc/resolv.conf").write_text("nameserver 192.0.2.1\n")
    else:
        (tmp_path / "etc/resolv.conf").symlink_to(link)
    assert resolv_conf_target(tmp_path) == expected


def test_resolv_conf_target_never_leads_out_of_the_root(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "run").symlink_to("/run")  # a mount there would land on the host's /run
    (tmp_path / "etc/resolv.conf").symlink_to("/run/resolv.conf")
    assert resolv_conf_target(tmp_path) == ""


@needs_root
def test_a_failing_command_names_itself_and_leaves_no_mount(rootfs: Path, tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match="recipe run command 'echo bad >&2; exit 3'") as info:
        run_command(rootfs, "echo bad >&2; exit 3", tmp_path / "log")
    assert info.value.status == 3 and info.value.log_tail == "bad"
    assert host_mounts_under(rootfs) == []
    assert not (rootfs / "run/resolv.conf").exists()


@needs_root
def test_mounts_stay_in_the_commands_namespace_and_cancel_ends_it(
    rootfs: Path, tmp_path: Path
) -> None:
    """While a command runs its mounts exist in its own namespace only; setting the token
    kills it and everything it started (a background ``sleep`` too) at once."""
    cancel = CancelToken()
    raised: list[ImageBuildError] = []

    def body() -> None:
        try:
            run_command(rootfs, "sleep 300 & touch /tmp/started; sleep 301", tmp_path / "log",
                        cancel)  # fmt: skip
        except ImageBuildError as exc:  # BuildCancelledError is one
            raised.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    deadline = time.monotonic() + 15
    while not (rootfs / "tmp/started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    inside = procs_rooted_in(rootfs)
    assert len(inside) >= 2, "the command and its background sleep"
    # (a chrooted process sees its mount points relative to its root)
    theirs = {ln.split()[4] for ln in Path(f"/proc/{inside[0]}/mountinfo").read_text().splitlines()}
    assert {"/proc", "/sys", "/dev", "/dev/pts", "/dev/null", "/run/resolv.conf"} <= theirs
    assert host_mounts_under(rootfs) == []
    cancel.cancel()
    thread.join(60)  # the command would run 300 s: still alive here means not cancelled
    assert not thread.is_alive()
    [exc] = raised
    assert isinstance(exc, BuildCancelledError)
    assert procs_rooted_in(rootfs) == []
    assert host_mounts_under(rootfs) == []
    assert not (rootfs / "run/resolv.conf").exists()
