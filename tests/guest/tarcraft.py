"""Crafted tar archives for the host side of copy_out, and a view of what lies outside.

Entries are built with ``tarfile`` exactly as a hostile guest could send them;
:func:`feed` hands the bytes to :func:`vmrunner.guest.transfer.extract_tar` through
a real :class:`ChunkPipe`, as the channel does.
"""

from __future__ import annotations

import io
import os
import posixpath
import stat
import tarfile
from pathlib import Path

from vmrunner.guest import transfer
from vmrunner.guest.safetar import CopyLimits

Entry = tuple[tarfile.TarInfo, bytes | None]


def reg(name: str, data: bytes = b"data", mode: int = 0o644, mtime: int = 0) -> Entry:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, mtime
    return info, data


def folder(name: str, mode: int = 0o755) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return info, None


def sym(name: str, target: str) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info, None


def hard(name: str, target: str) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info, None


def special(name: str, kind: bytes) -> Entry:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = kind, 1, 3
    return info, None


def tar_bytes(entries: list[Entry]) -> bytes:
    """A pax archive of ``entries``, in order, with nothing tarfile would tidy up."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, None if data is None else io.BytesIO(data))
    return buf.getvalue()


def pipe_of(data: bytes) -> transfer.ChunkPipe:
    """A ChunkPipe holding ``data`` in 64 KiB chunks, then EOF."""
    pipe = transfer.ChunkPipe()
    for at in range(0, len(data), 1 << 16):
        pipe.feed(data[at : at + (1 << 16)])
    pipe.feed_eof()
    return pipe


def feed(entries: list[Entry], host_dst: Path, limits: CopyLimits | None = None) -> None:
    """Extract ``entries`` the way copy_out does (directory form: ``.`` first)."""
    data = tar_bytes([folder("."), *entries])
    transfer.extract_tar(pipe_of(data), host_dst, limits or transfer.DEFAULT_LIMITS)


def outside_view(root: Path, dest: Path) -> dict[str, tuple[str, bytes | str, int]]:
    """Every path under ``root`` but not under ``dest``: kind, content or target, mode."""
    seen: dict[str, tuple[str, bytes | str, int]] = {}
    for top, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(top, d) != dest]
        for name in [*dirs, *files]:
            path = Path(top, name)
            if path == dest:
                continue
            st = path.lstat()
            rel, mode = str(path.relative_to(root)), stat.S_IMODE(st.st_mode)
            if path.is_symlink():
                seen[rel] = ("link", str(path.readlink()), 0)
            elif path.is_dir():
                seen[rel] = ("dir", "", mode)
            else:
                seen[rel] = ("file", path.read_bytes(), mode)
    return seen


def resolve(path: str, hops: int = 40) -> str | None:
    """Where the kernel takes the absolute ``path``, following every link (None: a loop).

    Missing components are taken lexically, as if made later as directories. Not
    ``os.path.realpath``: on 3.11 it returns nonsense for some loops (``a -> a//a``).
    """
    todo, done = [p for p in path.split("/") if p not in ("", ".")], "/"
    while todo:
        name = todo.pop(0)
        if name == "..":
            done = posixpath.dirname(done)
            continue
        step = posixpath.join(done, name)
        if not Path(step).is_symlink():
            done = step
            continue
        hops -= 1
        if hops < 0:
            return None
        target = str(Path(step).readlink())
        done = "/" if target.startswith("/") else done
        todo[:0] = [p for p in target.split("/") if p not in ("", ".")]
    return done


def cve_2025_4517(victim_dir: str, real_parents: bool) -> list[Entry]:
    """The CVE-2025-4517 pattern: a symlink chain past PATH_MAX, then a hard link out.

    Sixteen 247-byte directories, each reachable through a one-letter symlink; a
    link at the end of the letter chain climbs back up 16 levels (where realpath
    gave up, because the expanded path passed PATH_MAX); ``escape`` goes through
    it to ``victim_dir`` (relative to the destination's parent); a hard link to
    ``escape/victim`` then lets a file member overwrite the victim. With
    ``real_parents`` the long link is named by the real directories instead.
    """
    comp, steps, path, entries = "d" * 247, "abcdefghijklmnop", "", []
    for step in steps:
        entries += [folder(f"{path}{comp}"), sym(f"{path}{step}", comp)]
        path += f"{comp}/"
    chain = path if real_parents else "/".join(steps) + "/"
    linkpath = f"{chain}{'l' * 254}"
    entries.append(sym(linkpath, "../" * len(steps)))
    entries.append(sym("escape", linkpath + "/../" + victim_dir))
    entries.append(hard("flaglink", "escape/victim"))
    entries.append(reg("flaglink", b"overwritten by the guest\n"))
    return entries
