"""Apply a recipe's layers (users, files, units, run commands) to an unpacked root.

Runs after ``install_guest_files``, in this order: users (so that files can be
owned by them), files, units, then the run commands. Each run command -- and each of the
image's programs that apply users, owners and units -- runs in a sandbox, in two stages:

1. as the host's root, ``unshare --mount`` and :mod:`.idmount` put an idmapped view of the
   root on itself (the image keeps its real ownership on disk; the view shows it to the
   build's user namespace as it is: root's files as root's), bind the host's resolv.conf
   read-only where the image's /etc/resolv.conf leads (/run/resolv.conf), and change into
   the root;
2. ``unshare`` makes a user namespace whose root is the unprivileged first id of root's
   subordinate range (:mod:`.idmap`), with private mount, PID and network namespaces; as
   its root, it mounts /proc, /sys (read-only), a small /dev (null, zero, full, random,
   urandom, tty, /dev/pts, /dev/shm), then ``chroot``s into the root.

No mount is ever visible on the host and all go with the namespaces when the command ends
or is killed (even by ``kill -9`` of vmrunner); every process the command started ends with
it. The image is left as it was: a resolv.conf created as a mount point is removed afterwards.

A recipe may come from an untrusted repository, so its commands run as an unprivileged host
uid: uid 0 inside, the range's first id outside, with every file of the host outside the
image (the bound resolv.conf, the devices, /proc and /sys entries of the host's root) shown
as owned by ``nobody`` and open to it only as to any other user. They get a network
namespace of their own (loopback only: not the host's network; packages come from the
recipe's ``packages``, installed by mmdebstrap), /proc/sys, /proc/sysrq-trigger, /proc/irq
and /proc/bus read-only and /proc/kcore hidden, and only the capabilities that configure
the image (file ownership and permission ones, setuid/setgid, kill, setfcap: no mount,
chroot, mknod, module, raw I/O, network or ptrace, and those only over the image's ids),
with ``no_new_privs``; the image's view is ``nosuid`` and ``nodev``. They start with a
scrubbed environment (``idmap.build_env``: none of vmrunner's variables). Inside the image they
are root: its files belong to root and the commands configure them.

The image's own programs that apply users, file owners and units (``useradd``, ``chown``,
``systemctl enable``) run in the same sandbox: ``files:`` may have replaced them.

``files:`` and units are written where a process chrooted in the image would write them:
symlinks in their directories are followed inside the root (``/var/run`` -> ``/run`` is the
image's /run, never the host's).

Each command has a timeout and follows a ``CancelToken``; a failure raises
``ImageBuildError`` naming the layer item, with its output tail.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

from vmrunner.cancel import CancelToken
from vmrunner.errors import ImageBuildError
from vmrunner.images import idmount
from vmrunner.images.idmap import IdRange, build_env, build_range, userns_argv
from vmrunner.images.recipe import FileSpec, Recipe, UnitSpec, UserSpec
from vmrunner.procs import require_tool, run_tool

RUN_TIMEOUT_S = 600.0
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
# Runs as PID 1 of the new namespaces (root of the build's user namespace), in the root that
# idmount.py made the current directory: $1 the root ("."), $2 the command, $3 the host's
# Python, $4 the program that drops capabilities.
SANDBOX_SH = f"""
r=$1
mount -t proc -o nosuid,nodev,noexec proc "$r/proc"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$r/sys"
mount -t tmpfs -o nosuid,mode=0755 dev "$r/dev"
for n in {" ".join(DEV_NODES)}; do : > "$r/dev/$n"; mount --bind "/dev/$n" "$r/dev/$n"; done
mkdir "$r/dev/pts" "$r/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$r/dev/pts"
mount -t tmpfs -o nosuid,nodev,mode=1777 shm "$r/dev/shm"
ln -s pts/ptmx "$r/dev/ptmx"
ln -s /proc/self/fd "$r/dev/fd"
ln -s /proc/self/fd/0 "$r/dev/stdin"
ln -s /proc/self/fd/1 "$r/dev/stdout"
ln -s /proc/self/fd/2 "$r/dev/stderr"
for p in sys sysrq-trigger irq bus; do
  if [ -e "$r/proc/$p" ]; then mount --bind -o ro "$r/proc/$p" "$r/proc/$p"; fi
done
if [ -e "$r/proc/kcore" ]; then mount --bind /dev/null "$r/proc/kcore"; fi
exec "$3" -I -S -c "$4" "$r" "$2"
"""
# The last step of the sandbox, by the host's Python: chroot, then drop every capability
# not in KEEP_CAPS from the bounding set and set no_new_privs, then exec the command (as
# root, the new program gets only what the bounding set still holds).
KEEP_CAPS = (0, 1, 2, 3, 4, 5, 6, 7, 10, 29, 31)  # chown dac_override dac_read_search fowner
# fsetid kill setgid setuid net_bind_service audit_write setfcap
DROP_CAPS_PY = f"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
last = int(open("/proc/sys/kernel/cap_last_cap").read())
os.chroot(sys.argv[1]); os.chdir("/")
for cap in range(last + 1):
    if cap not in {KEEP_CAPS!r} and libc.prctl(24, cap, 0, 0, 0) != 0:
        sys.exit("cannot drop capability %d" % cap)
if libc.prctl(38, 1, 0, 0, 0) != 0:
    sys.exit("cannot set no_new_privs")
os.execv("/bin/sh", ["/bin/sh", "-ec", sys.argv[2]])
"""


def _inside(rootfs: Path, guest_path: str) -> Path:
    """``guest_path`` (absolute, normalised) under ``rootfs``; refuses to escape it."""
    norm = posixpath.normpath("/" + guest_path.lstrip("/"))
    if norm == "/" or ".." in norm.split("/"):
        raise ImageBuildError(f"recipe path {guest_path!r} is not a file path inside the image")
    return rootfs / norm.lstrip("/")


MAX_LINKS = 40


def resolve_in_root(rootfs: Path, guest_path: str) -> Path:
    """The host path of ``guest_path`` as a process chrooted in ``rootfs`` reaches it: every
    symlink among its directories is followed inside the root (an absolute target starts
    again at the root, ``..`` stops at it); the last component is not followed. Raises
    ``ImageBuildError`` for a path with ``..`` or a symlink loop."""
    last = _inside(rootfs, guest_path).name
    pending = posixpath.normpath("/" + guest_path.lstrip("/")).split("/")[1:-1]
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            resolved = resolved[:-1]
            continue
        candidate = rootfs.joinpath(*resolved, part)
        if not candidate.is_symlink():
            resolved.append(part)
            continue
        links += 1
        if links > MAX_LINKS:
            raise ImageBuildError(f"recipe path {guest_path!r}: too many symlinks in the image")
        target = str(candidate.readlink())
        resolved = [] if target.startswith("/") else resolved
        pending = target.split("/") + pending
    return rootfs.joinpath(*resolved, last)


def add_user(rootfs: Path, user: UserSpec, log: Path, cancel: CancelToken | None = None) -> None:
    argv = ["useradd", "-m", "-s", user.shell]
    if user.groups:
        argv += ["-G", ",".join(user.groups)]
    run_in_image(rootfs, [*argv, user.name], f"recipe user {user.name}", log, cancel)


def write_file(rootfs: Path, spec: FileSpec, log: Path, cancel: CancelToken | None = None) -> None:
    path = resolve_in_root(rootfs, spec.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(spec.content)
    path.chmod(spec.mode)
    if spec.owner not in ("root", "root:root", "0:0"):
        guest = "/" + path.relative_to(rootfs).as_posix()
        what = f"recipe file {spec.path} (chown)"
        run_in_image(rootfs, ["chown", spec.owner, guest], what, log, cancel)


def install_unit(
    rootfs: Path, unit: UnitSpec, log: Path, cancel: CancelToken | None = None
) -> None:
    target = resolve_in_root(rootfs, f"/etc/systemd/system/{unit.name}")
    etc = target.parent
    if unit.content:
        etc.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        target.write_text(unit.content)
        target.chmod(0o644)
    if unit.mask:
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to("/dev/null")
    elif unit.enable:
        what = f"recipe unit {unit.name} (enable)"
        run_in_image(rootfs, ["systemctl", "enable", unit.name], what, log, cancel)


def _real_dir(rootfs: Path, guest: str) -> Path:
    """``rootfs``/``guest`` as a directory that is no symlink (a mount on it stays inside)."""
    path = _inside(rootfs, guest)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise ImageBuildError(f"cannot mount on {guest} in the image: it is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolv_conf_target(rootfs: Path) -> str:
    """The guest path the image's /etc/resolv.conf leads to (following one symlink), or ""
    when the host has no resolv.conf or the path would leave the root through a symlink."""
    if not HOST_RESOLV_CONF.exists():
        return ""
    link = rootfs / "etc/resolv.conf"
    guest = "/etc/resolv.conf"
    if link.is_symlink():
        guest = posixpath.normpath(posixpath.join("/etc", str(link.readlink())))
    path = _inside(rootfs, guest)
    parent = rootfs.resolve() / posixpath.dirname(guest).lstrip("/")
    if path.is_symlink() or path.parent.resolve() != parent:
        return ""
    return guest


@contextlib.contextmanager
def _mount_point(path: Path) -> Iterator[None]:
    """An empty file at ``path`` while the context lasts, unless a file is there already;
    what it created (the file, missing parent directories) is removed afterwards."""
    if path.exists():
        yield
        return
    made = [d for d in reversed(path.parents) if not d.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        for d in reversed(made):
            with contextlib.suppress(OSError):
                d.rmdir()


def run_command(rootfs: Path, command: str, log: Path, cancel: CancelToken | None = None) -> None:
    """Run ``command`` with ``/bin/sh -ec`` in the sandbox described in the module docstring."""
    _sandboxed(rootfs, command, f"recipe run command {command!r}", log, cancel)


def run_in_image(
    rootfs: Path, argv: list[str], what: str, log: Path, cancel: CancelToken | None = None
) -> None:
    """Run the image's program ``argv`` (depmod, useradd, chown, systemctl, ...) in the
    sandbox of the run commands: the image's programs come from the recipe's packages and
    ``files:``, so they get no more than a run command."""
    _sandboxed(rootfs, shlex.join(argv), what, log, cancel)


def sandbox_argv(rootfs: Path, command: str, resolv: str, ids: IdRange, unshare: str) -> list[str]:
    """The command that runs ``command`` in the sandbox of the module docstring:
    ``unshare --mount`` and idmount.py as the host's root (an idmapped view of ``rootfs``,
    the host's resolv.conf bound read-only on the image's ``resolv`` unless it is ""), then
    ``unshare`` into the user, mount, PID and network namespaces as root of ``ids``."""
    python = os.path.realpath(sys.executable)  # reachable by the unprivileged ids too
    inner = [*userns_argv(unshare, ids), "--mount", "--propagation", "private", "--pid",
             "--net", "--fork", "--kill-child", "--", "/bin/sh", "-ec", SANDBOX_SH,
             "vmrunner-sandbox", ".", command, python, DROP_CAPS_PY]  # fmt: skip
    return [unshare, "--mount", "--propagation", "private", "--", python, "-I", "-S",
            idmount.__file__, str(rootfs), str(HOST_RESOLV_CONF), resolv, str(ids.uid),
            str(ids.gid), str(ids.count), "--", *inner]  # fmt: skip


def _sandboxed(
    rootfs: Path, command: str, what: str, log: Path, cancel: CancelToken | None
) -> None:
    unshare = require_tool("unshare", "apt-get install util-linux")
    require_tool("newuidmap", "apt-get install uidmap")
    ids = build_range()
    for guest in ("/proc", "/sys", "/dev"):
        _real_dir(rootfs, guest)
    resolv = resolv_conf_target(rootfs)
    argv = sandbox_argv(rootfs, command, resolv, ids, unshare)
    point = _mount_point(_inside(rootfs, resolv)) if resolv else contextlib.nullcontext()
    with point:
        env = build_env("/root")
        run_tool(argv, timeout=RUN_TIMEOUT_S, what=what, log=log, env=env, cancel=cancel)


def apply_layers(
    rootfs: Path, recipe: Recipe, log: Path, cancel: CancelToken | None = None
) -> None:
    """Apply ``recipe``'s users, files, units and run commands to ``rootfs``, in that order."""
    for user in recipe.users:
        add_user(rootfs, user, log, cancel)
    for spec in recipe.files:
        write_file(rootfs, spec, log, cancel)
    for unit in recipe.units:
        install_unit(rootfs, unit, log, cancel)
    for command in recipe.run:
        run_command(rootfs, command, log, cancel)
