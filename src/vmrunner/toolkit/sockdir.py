"""Private directories for the toolkit's Unix sockets, recorded so that gc can reap them.

A run's service socket (:mod:`.run`) lives in a directory of its own under ``<system temp>/vmrunner-toolkit-<uid>`` (short:
a socket name holds at most 108 bytes). Each is a record directory
(:func:`vmrunner.vm.records.new_record_dir`, mode 0700) naming the process that owns it,
so ``vmrunner gc`` removes those a killed run left behind and never a live one's.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from vmrunner.errors import VmrunnerError
from vmrunner.vm.records import VmRecord, new_record_dir


class SocketDirError(VmrunnerError):
    """The parent of the toolkit's socket directories is not this user's own directory."""


def sockets_parent() -> Path:
    """Where the toolkit's socket directories are made (not created here)."""
    return Path(tempfile.gettempdir()) / f"vmrunner-toolkit-{os.getuid()}"


def new_socket_dir(prefix: str) -> VmRecord:
    """A fresh recorded directory (0700) for sockets, owned by this process. Raises
    :class:`SocketDirError` when the parent is a link, not a directory, not ours, or
    open to others (someone else made it first in the shared temp directory)."""
    parent = sockets_parent()
    try:
        parent.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = parent.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise SocketDirError(
            f"{parent} must be a directory of user {os.getuid()} with mode 0700; remove it"
        )
    return new_record_dir(parent, prefix)
