"""Extract a guest's tar stream member by member, never writing outside the destination.

The guest is not trusted. Python's own guard (``tarfile`` extraction filters) is
missing before 3.11.4 (Debian 12 ships 3.11.2) and can be bypassed before 3.11.13
(CVE-2025-4517: symlink chains longer than ``PATH_MAX``), so nothing here relies on
it: each member is checked, then written through directory file descriptors.

* Names are relative, without ``..`` or NUL; ``.`` and empty components are
  dropped (``()`` is the destination itself, which must be a directory).
* Parents are opened one component at a time from the destination's fd with
  ``O_NOFOLLOW``: a member below a symlink (made by the archive or already there)
  is refused, so no write ever follows a link. Missing parents are created.
* The last component is made with ``O_CREAT|O_EXCL|O_NOFOLLOW``, ``mkdirat``,
  ``symlinkat`` or ``linkat`` without following: a race cannot redirect it. A
  non-directory already there is unlinked first; a directory is merged into.
* Symlinks need a relative target whose ``..`` components all come first and
  climb no higher than the link's own directory. Such a link starts from a real
  directory inside and only descends, so by induction every link the archive makes
  resolves inside (conservative: ``a/../b`` is refused). Links that were already
  in the destination are the host user's, and trusted.
* Hard links are kept only to a regular file this extraction wrote (``linkat``,
  not following); any other hard link, devices, FIFOs, sparse files and unknown
  types are refused.
* Files keep their mode less setuid/setgid/sticky and group/other write, with
  owner read/write added (tarfile's ``data`` filter rule); directories keep
  ``(mode & 0o755) | 0o700``, set once all members are in. Mtimes are kept,
  ownership is not.
* :class:`CopyLimits` caps the bytes of files and the number of members, checked
  before anything is written; an extended header may not pass 1 MiB.

Refusals raise :class:`UnsafeArchiveError` (:class:`ArchiveLimitError` for a
limit) naming the member; a file cut short is removed. What was extracted before
stays. Does not delete anything already at the destination except a
non-directory a member replaces.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vmrunner.errors import ArchiveLimitError, UnsafeArchiveError
from vmrunner.guest.protocol import GuestOpError

Parts = tuple[str, ...]

MAX_EXTENDED_HEADER = 1 << 20
COPY_BUFFER = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_EXTENDED = {
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
}


@dataclass(frozen=True, slots=True)
class CopyLimits:
    """How much one copy_out may bring: total bytes of files and number of members."""

    max_bytes: int = 8 << 30
    max_members: int = 250_000

    def __post_init__(self) -> None:
        if self.max_bytes < 0 or self.max_members < 1:
            raise ValueError(f"copy limits must be positive: {self}")


def member_parts(name: str) -> Parts:
    """The components of a member name below the destination (``()``: the destination).

    Raises ValueError, whose message is the reason, for an empty or absolute name,
    a NUL byte or text the file system cannot encode, or a ``..`` component.
    """
    if not name:
        raise ValueError("empty name")
    if "\0" in name or not _encodable(name):
        raise ValueError("NUL byte or unencodable text in the name")
    if name.startswith("/"):
        raise ValueError("absolute name")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ValueError("'..' in the name")
    return parts


def link_target_problem(link: Parts, target: str) -> str | None:
    """Why a symlink at ``link`` (a member's parts) to ``target`` may leave the destination.

    None if the target is relative, has its ``..`` components first only, and no
    more of them than the link's directory is deep. Pure: looks at no file.
    """
    if not target or "\0" in target or not _encodable(target):
        return f"symlink target {target!r} is empty or holds a NUL byte or unencodable text"
    if target.startswith("/"):
        return f"symlink target {target!r} is absolute"
    parts = [p for p in target.split("/") if p not in ("", ".")]
    ups = next((i for i, p in enumerate(parts) if p != ".."), len(parts))
    if ".." in parts[ups:]:
        return f"symlink target {target!r} has '..' after a name (it could climb through a link)"
    if ups > len(link) - 1:
        return f"symlink target {target!r} climbs above the destination"
    return None


def _encodable(text: str) -> bool:
    try:
        os.fsencode(text)
    except UnicodeError:
        return False
    return True


class _HeaderTooBig(Exception):
    """An extended header over MAX_EXTENDED_HEADER (raised inside tarfile, before reading it)."""


class _GuardedInfo(tarfile.TarInfo):
    """TarInfo that refuses an extended header (pax, GNU long name) over 1 MiB before reading it."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED and self.size > MAX_EXTENDED_HEADER:
            raise _HeaderTooBig(self.name, self.size)
        info: tarfile.TarInfo = super()._proc_member(archive)  # type: ignore[misc]
        return info


def extract_archive(fileobj: object, host_dst: Path, limits: CopyLimits, where: str) -> None:
    """Extract a tar stream of one path so that it becomes ``host_dst``.

    A first member ``.`` means a directory: members land below ``host_dst``.
    Otherwise the archive must hold one member, which lands as ``host_dst``.
    Creates missing parents of ``host_dst``. ``where`` starts error messages.
    Raises UnsafeArchiveError (see the module), GuestOpError for an empty archive,
    tarfile.TarError for a broken stream, OSError for a host I/O error.
    """
    open_stream: Callable[..., tarfile.TarFile] = tarfile.open
    with open_stream(fileobj=fileobj, mode="r|", tarinfo=_GuardedInfo) as tar:
        first = _next(tar, where)
        if first is None:
            raise GuestOpError(f"{where}: the guest sent an empty archive")
        single = first.name != "."
        if single and host_dst.name in ("", ".", ".."):
            raise GuestOpError(f"{where}: cannot put a single file there")
        dest = host_dst.parent if single else host_dst
        dest.mkdir(parents=True, exist_ok=True)
        _extract_members(tar, first, dest, host_dst.name if single else None, limits, where)


def _next(tar: tarfile.TarFile, where: str) -> tarfile.TarInfo | None:
    """The next member; extended headers too big or too deeply chained are refused."""
    try:
        return tar.next()
    except _HeaderTooBig as exc:
        name, size = exc.args
        reason = f"extended header of {size} bytes (limit {MAX_EXTENDED_HEADER})"
        raise ArchiveLimitError(name, reason, where) from None
    except RecursionError:  # tarfile recurses once per chained extended header
        raise UnsafeArchiveError("<headers>", "too many chained extended headers", where) from None


def _extract_members(
    tar: tarfile.TarFile,
    first: tarfile.TarInfo,
    dest: Path,
    rename: str | None,
    limits: CopyLimits,
    where: str,
) -> None:
    """Extract ``first`` and every member after it into the existing directory ``dest``."""
    root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        extractor = _Extractor(root, limits, where)
        member: tarfile.TarInfo | None = first
        while member is not None:
            if rename is not None and member is not first:
                raise extractor.refuse(member, "a second member after a single file")
            parts = (rename,) if rename is not None else extractor.parts(member)
            extractor.add(tar, member, parts)
            tar.members.clear()  # type: ignore[attr-defined]  # stream mode keeps each TarInfo
            member = _next(tar, where)
        extractor.finish()
    finally:
        os.close(root)


class _Extractor:
    """Writes members below one directory fd; keeps the counts and what it wrote."""

    def __init__(self, root: int, limits: CopyLimits, where: str) -> None:
        self.root = root
        self.limits = limits
        self.where = where
        self.members = 0
        self.bytes = 0
        self.files: set[Parts] = set()
        self.dirs: list[tuple[Parts, int, float]] = []

    def refuse(self, member: tarfile.TarInfo, reason: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(member.name, reason, self.where)

    def parts(self, member: tarfile.TarInfo) -> Parts:
        try:
            return member_parts(member.name)
        except ValueError as exc:
            raise self.refuse(member, str(exc)) from None

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parts: Parts) -> None:
        """Check and write one member (see the module for the rules)."""
        self.members += 1
        if self.members > self.limits.max_members:
            limit = self.limits.max_members
            raise ArchiveLimitError(member.name, f"more than max_members={limit}", self.where)
        if member.isdir():
            self._dir(member, parts)
        elif not parts:
            raise self.refuse(member, "the destination itself must be a directory")
        elif member.issym():
            self._symlink(member, parts)
        elif member.islnk():
            self._hardlink(member, parts)
        elif member.isreg() and not member.issparse():
            self._file(tar, member, parts)
        else:
            raise self.refuse(member, f"{_kind(member)} is not allowed")

    def finish(self) -> None:
        """Set directory modes and mtimes, deepest last-made first (as tarfile does)."""
        for parts, mode, mtime in reversed(self.dirs):
            fd = self._walk("", parts, create=False)
            try:
                os.fchmod(fd, mode)
                _set_mtime(fd, mtime)
            finally:
                os.close(fd)

    def _dir(self, member: tarfile.TarInfo, parts: Parts) -> None:
        if parts:
            with self._parent(member, parts) as dfd:
                if not self._make_room(dfd, parts, keep_dir=True):
                    os.mkdir(parts[-1], 0o700, dir_fd=dfd)
        self.dirs.append((parts, (member.mode & 0o755) | 0o700, member.mtime))

    def _symlink(self, member: tarfile.TarInfo, parts: Parts) -> None:
        problem = link_target_problem(parts, member.linkname)
        if problem is not None:
            raise self.refuse(member, problem)
        with self._parent(member, parts) as dfd:
            self._make_room(dfd, parts, keep_dir=False)
            os.symlink(member.linkname, parts[-1], dir_fd=dfd)

    def _hardlink(self, member: tarfile.TarInfo, parts: Parts) -> None:
        try:
            target = member_parts(member.linkname)
        except ValueError as exc:
            raise self.refuse(member, f"hard link target {member.linkname!r}: {exc}") from None
        if target not in self.files or target == parts:
            reason = f"hard link to {member.linkname!r}, not a file extracted before it"
            raise self.refuse(member, reason)
        with self._parent(member, target) as sfd, self._parent(member, parts) as dfd:
            self._make_room(dfd, parts, keep_dir=False)
            os.link(target[-1], parts[-1], src_dir_fd=sfd, dst_dir_fd=dfd, follow_symlinks=False)
        self.files.add(parts)

    def _file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parts: Parts) -> None:
        if self.bytes + member.size > self.limits.max_bytes:
            reason = (
                f"its {member.size} bytes would pass max_bytes={self.limits.max_bytes}"
                f" ({self.bytes} bytes of files already extracted)"
            )
            raise ArchiveLimitError(member.name, reason, self.where)
        self.bytes += member.size
        source = tar.extractfile(member)
        assert source is not None  # a regular file always has a reader
        with self._parent(member, parts) as dfd:
            self._make_room(dfd, parts, keep_dir=False)
            fd = os.open(parts[-1], _FILE_FLAGS, 0o600, dir_fd=dfd)
            try:
                with open(fd, "wb", closefd=False) as out:
                    shutil.copyfileobj(source, out, COPY_BUFFER)
                os.fchmod(fd, _file_mode(member.mode))
                _set_mtime(fd, member.mtime)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(parts[-1], dir_fd=dfd)
                raise
            finally:
                os.close(fd)
        self.files.add(parts)

    def _make_room(self, dfd: int, parts: Parts, keep_dir: bool) -> bool:
        """Unlink a non-directory at ``parts``; True if a directory is there (kept)."""
        try:
            mode = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(mode):
            if keep_dir:
                return True
            raise IsADirectoryError(errno.EISDIR, "a directory is in the way", "/".join(parts))
        os.unlink(parts[-1], dir_fd=dfd)
        self.files.discard(parts)
        return False

    @contextlib.contextmanager
    def _parent(self, member: tarfile.TarInfo, parts: Parts) -> Iterator[int]:
        """An fd of the directory holding ``parts``, made if missing, no link followed."""
        fd = self._walk(member.name, parts[:-1], create=True)
        try:
            yield fd
        finally:
            os.close(fd)

    def _walk(self, name: str, parts: Parts, create: bool) -> int:
        """Open the directory at ``parts`` one component at a time, never through a link."""
        fd = os.dup(self.root)
        try:
            for i in range(len(parts)):
                new = self._open_dir(fd, name, parts[: i + 1], create)
                os.close(fd)
                fd = new
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_dir(self, fd: int, name: str, prefix: Parts, create: bool) -> int:
        try:
            return os.open(prefix[-1], _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise
        except NotADirectoryError:
            if _is_link(fd, prefix[-1]):
                reason = f"it lies below the symlink {'/'.join(prefix)!r}"
                raise UnsafeArchiveError(name, reason, self.where) from None
            raise
        os.mkdir(prefix[-1], 0o777, dir_fd=fd)
        return os.open(prefix[-1], _DIR_FLAGS, dir_fd=fd)


def _is_link(dfd: int, name: str) -> bool:
    with contextlib.suppress(OSError):
        return stat.S_ISLNK(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode)
    return False


def _file_mode(mode: int) -> int:
    """tarfile's data filter rule: no special or group/other write bits, owner rw."""
    mode &= 0o755
    if not mode & 0o100:
        mode &= ~0o111
    return mode | 0o600


def _set_mtime(fd: int, mtime: float) -> None:
    with contextlib.suppress(OverflowError, ValueError):
        os.utime(fd, (mtime, mtime))


def _kind(member: tarfile.TarInfo) -> str:
    if member.ischr():
        return "a character device"
    if member.isblk():
        return "a block device"
    if member.isfifo():
        return "a FIFO"
    if member.issparse():
        return "a sparse file"
    return f"member type {member.type!r}"
