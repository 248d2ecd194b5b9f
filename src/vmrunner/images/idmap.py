"""The unprivileged id range that image builds run recipe code as.

A recipe may come from an untrusted repository: its packages' maintainer scripts (run by
mmdebstrap) and its ``run:`` commands (run by :mod:`.layers`) execute in a user namespace
whose root is the first id of root's subordinate range in ``/etc/subuid`` and
``/etc/subgid`` (``root:START:COUNT``, set up by ``scripts/bootstrap.sh``), never the
host's root. Inside, ids ``0 .. RANGE_SIZE-1`` are host ids ``START ..``; ``newuidmap`` and
``newgidmap`` (package ``uidmap``) write the maps for ``unshare --map-users``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vmrunner.errors import ImageBuildError

SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
RANGE_SIZE = 65536  # ids 0..65535 inside: every id an image's files use, nobody included
MAX_ID = 2**32 - 2  # (uid_t)-1 is "no id"
BUILD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY_VARS = ("http_proxy", "https_proxy", "ftp_proxy", "no_proxy",
              "HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY")  # fmt: skip
SETUP_HINT = "run scripts/bootstrap.sh (it adds root:START:65536 to /etc/subuid and /etc/subgid)"


@dataclass(frozen=True)
class IdRange:
    """Host ids ``uid .. uid+count-1`` and ``gid .. gid+count-1`` shown as ``0 .. count-1``
    inside the build's user namespace."""

    uid: int
    gid: int
    count: int = RANGE_SIZE


def parse_subid(text: str, user: str = "root", uid: int = 0) -> tuple[int, int] | None:
    """The first ``(start, count)`` of ``user`` (by name or by ``uid``) in the text of a
    subordinate id file (``name:start:count`` lines, as ``newuidmap`` reads them); ``None``
    when there is none. Lines that are not three fields of which the last two are decimal
    numbers are skipped, as ``newuidmap`` does."""
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (user, str(uid)):
            continue
        start, count = fields[1], fields[2]
        if start.isdecimal() and count.isdecimal():
            return int(start), int(count)
    return None


def checked_range(path: Path, entry: tuple[int, int] | None) -> int:
    """The start of ``entry`` (from ``path``) when it is a usable build range: at least
    ``RANGE_SIZE`` ids, not host root's id 0, within the id space. Raises
    ``ImageBuildError`` naming the file and the fix otherwise."""
    if entry is None:
        raise ImageBuildError(f"{path} has no range for root: {SETUP_HINT}")
    start, count = entry
    if start == 0 or count < RANGE_SIZE or start + RANGE_SIZE - 1 > MAX_ID:
        raise ImageBuildError(
            f"{path}: root's range {start}:{count} cannot be the build's ids (it must not "
            f"contain id 0 and must hold at least {RANGE_SIZE} ids): {SETUP_HINT}"
        )
    return start


def build_range(subuid: Path = SUBUID, subgid: Path = SUBGID) -> IdRange:
    """Root's subordinate id range, read from ``subuid`` and ``subgid``; raises
    ``ImageBuildError`` (naming the file and ``scripts/bootstrap.sh``) when it is missing
    or unusable."""
    starts = []
    for path in (subuid, subgid):
        text = path.read_text() if path.exists() else ""
        starts.append(checked_range(path, parse_subid(text)))
    return IdRange(starts[0], starts[1])


def userns_argv(unshare: str, ids: IdRange) -> list[str]:
    """The ``unshare`` options (pure) that run a command as root of a new user namespace
    mapped to ``ids``: uid and gid 0 inside, ``ids.uid`` and ``ids.gid`` on the host, no
    supplementary groups, all of the host's ids outside the range unmapped."""
    return [
        unshare, "--user",
        f"--map-users={ids.uid},0,{ids.count}", f"--map-groups={ids.gid},0,{ids.count}",
        "--setuid", "0", "--setgid", "0",
    ]  # fmt: skip


def build_env(
    home: str, *, proxies: bool = False, environ: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """The whole environment recipe code starts with (no variable of vmrunner's own, whose
    tokens and settings are not the recipe's): a fixed ``PATH``, ``HOME``, ``LANG=C.UTF-8``
    and, with ``proxies`` (for apt), the proxy variables set in ``environ``."""
    env = {"PATH": BUILD_PATH, "HOME": home, "LANG": "C.UTF-8"}
    if proxies:
        env.update({k: environ[k] for k in PROXY_VARS if k in environ})
    return env
