"""First stage of the build sandbox: show the image root to the build's user namespace.

Run by the host's root as a script (``python -I -S idmount.py ROOT RESOLV GUEST UID GID
COUNT -- ARGV...``, standard library only) inside a private mount namespace that
``unshare --mount`` made, so none of its mounts is ever seen on the host. It

1. makes an idmapped mount of ``ROOT`` on itself (``open_tree``, ``mount_setattr``,
   ``move_mount``): through it, a file the host sees owned by id ``N`` shows as id
   ``UID+N`` (``GID+N``), which the build's user namespace (mapped ``0 -> UID``) sees as
   ``N`` again. The image keeps its real ownership on disk (root's files stay uid 0,
   setuid bits and file owners survive) while recipe code runs as an unprivileged host uid.
   The mount is also ``nosuid`` and ``nodev``;
2. binds the host file ``RESOLV`` read-only on ``ROOT/GUEST`` (when ``GUEST`` is not empty);
3. changes to ``ROOT`` (the next stage reaches it as ``.``, so directories above it need
   not be open to the unprivileged ids) and executes ``ARGV``.

Exits with a message naming the step on any failure.
"""

from __future__ import annotations

import ctypes
import os
import sys

SYS_OPEN_TREE = 428  # the same number on every architecture (syscalls after 424)
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
OPEN_TREE_CLONE = 0x1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_IDMAP = 0x100000
CLONE_NEWUSER = 0x10000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


class MountAttr(ctypes.Structure):
    """``struct mount_attr`` of ``mount_setattr(2)``."""

    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        sys.exit(f"vmrunner-sandbox: {what}: {os.strerror(err)}")
    return result


def userns_fd(uid: int, gid: int, count: int) -> int:
    """An open descriptor of a new user namespace mapping ``0..count-1`` to ``uid..`` and
    ``gid..`` (its maps written by this process, the host's root). The child that made it
    is reaped before returning."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: enter the namespace, then wait for the parent
        os.close(ready_r)
        os.close(done_w)
        ok = libc.unshare(CLONE_NEWUSER) == 0
        os.write(ready_w, b"1" if ok else b"0")
        os.read(done_r, 1)
        os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            sys.exit("vmrunner-sandbox: cannot make a user namespace")
        for name, start in (("uid_map", uid), ("gid_map", gid)):
            with open(f"/proc/{pid}/{name}", "w") as fh:
                fh.write(f"0 {start} {count}\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(done_w)
        os.waitpid(pid, 0)


def idmap_root(root: str, ns_fd: int) -> None:
    """Put an idmapped (``ns_fd``), nosuid, nodev copy of the mount of ``root`` on it."""
    path = root.encode()
    fd = _check(
        libc.syscall(
            ctypes.c_long(SYS_OPEN_TREE), ctypes.c_int(AT_FDCWD), ctypes.c_char_p(path),
            ctypes.c_uint(OPEN_TREE_CLONE | os.O_CLOEXEC),
        ),
        f"open_tree {root}",
    )  # fmt: skip
    attr = MountAttr(MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, 0, ns_fd)
    _check(
        libc.syscall(
            ctypes.c_long(SYS_MOUNT_SETATTR), ctypes.c_int(fd), ctypes.c_char_p(b""),
            ctypes.c_uint(AT_EMPTY_PATH), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
        ),
        f"idmapped mount of {root} (its file system must support idmapped mounts)",
    )  # fmt: skip
    _check(
        libc.syscall(
            ctypes.c_long(SYS_MOVE_MOUNT), ctypes.c_int(fd), ctypes.c_char_p(b""),
            ctypes.c_int(AT_FDCWD), ctypes.c_char_p(path), ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
        ),
        f"move_mount onto {root}",
    )  # fmt: skip
    os.close(fd)


def bind_read_only(source: str, target: str) -> None:
    """Bind the host file ``source`` on ``target``: read-only, nosuid, nodev, noexec."""
    _check(libc.mount(source.encode(), target.encode(), None, MS_BIND, None), f"bind {source}")
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    _check(libc.mount(None, target.encode(), None, flags, None), f"read-only {target}")


def main(args: list[str]) -> None:
    """``ROOT RESOLV GUEST UID GID COUNT -- ARGV...``: see the module docstring."""
    root, resolv, guest, uid, gid, count, sep, *argv = args
    if sep != "--" or not argv:
        sys.exit("usage: idmount.py ROOT RESOLV GUEST UID GID COUNT -- ARGV...")
    ns_fd = userns_fd(int(uid), int(gid), int(count))
    idmap_root(root, ns_fd)
    os.close(ns_fd)
    os.chdir(root)
    if guest:
        bind_read_only(resolv, "./" + guest.lstrip("/"))
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
