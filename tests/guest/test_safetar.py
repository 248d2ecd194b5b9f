"""copy_out's host side against crafted hostile archives, and the good cases it must keep.

Every hostile case runs in a box: ``box/outside/victim`` (a file a guest would
like to overwrite) beside the destination ``box/dest``. Each asserts the error
type, the member it names, the reason, and that nothing outside ``box/dest``
changed (no new path, no changed content, mode or link).
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from vmrunner.errors import ArchiveLimitError, UnsafeArchiveError
from vmrunner.guest import transfer
from vmrunner.guest.channel import GuestOpError
from vmrunner.guest.safetar import CopyLimits

from .tarcraft import (
    Entry,
    cve_2025_4517,
    feed,
    folder,
    hard,
    outside_view,
    pipe_of,
    reg,
    special,
    sym,
    tar_bytes,
)

pytestmark = pytest.mark.timeout(60)

LONG_CHAIN = "/".join([*"abcdefghijklmnop", "l" * 254])


@pytest.fixture
def box(tmp_path: Path) -> Path:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "victim").write_bytes(b"original\n")
    return tmp_path


@dataclass(frozen=True)
class Hostile:
    """An archive (built from the box path), its limits, and the refusal it must get."""

    entries: Callable[[Path], list[Entry]]
    member: Callable[[Path], str]
    reason: str
    error: type[UnsafeArchiveError] = UnsafeArchiveError
    limits: CopyLimits | None = None


def victim(box: Path) -> str:
    return str(box / "outside" / "victim")


HOSTILE = {
    "traversal": Hostile(
        lambda b: [reg("../outside/victim", b"PWNED")], lambda b: "../outside/victim", "'..'"
    ),
    "traversal after dot": Hostile(lambda b: [reg("./../x")], lambda b: "./../x", "'..'"),
    "traversal inside a name": Hostile(
        lambda b: [folder("sub"), reg("sub/../../x")], lambda b: "sub/../../x", "'..'"
    ),
    "absolute name": Hostile(lambda b: [reg(victim(b), b"PWNED")], victim, "absolute name"),
    "absolute /etc name": Hostile(lambda b: [reg("/etc/x")], lambda b: "/etc/x", "absolute name"),
    "CVE-2025-4517 chain past PATH_MAX": Hostile(
        lambda b: cve_2025_4517("outside", real_parents=False),
        lambda b: LONG_CHAIN,
        "below the symlink 'a'",
    ),
    "CVE-2025-4517 chain through real dirs": Hostile(
        lambda b: cve_2025_4517("outside", real_parents=True),
        lambda b: "escape",
        "'..' after a name",
    ),
    "file through a symlinked dir (outside)": Hostile(
        lambda b: [sym("ln", str(b / "outside")), reg("ln/victim", b"PWNED")],
        lambda b: "ln",
        "absolute",
    ),
    "file through a symlinked dir (inside)": Hostile(
        lambda b: [folder("sub"), sym("ln", "sub"), reg("ln/x", b"x")],
        lambda b: "ln/x",
        "below the symlink 'ln'",
    ),
    "symlink to outside, absolute": Hostile(
        lambda b: [sym("ln", victim(b))], lambda b: "ln", "is absolute"
    ),
    "symlink to outside, relative": Hostile(
        lambda b: [sym("ln", "../outside/victim")], lambda b: "ln", "climbs above"
    ),
    "symlink climbing from a subdir": Hostile(
        lambda b: [sym("a/b/ln", "../../../outside")], lambda b: "a/b/ln", "climbs above"
    ),
    "symlink through an inner link": Hostile(
        lambda b: [sym("a/up", ".."), sym("x", "a/up/a/up/../..")],
        lambda b: "x",
        "'..' after a name",
    ),
    "hard link to outside, absolute": Hostile(
        lambda b: [hard("hl", victim(b)), reg("hl", b"PWNED")], lambda b: "hl", "absolute"
    ),
    "hard link to outside, relative": Hostile(
        lambda b: [hard("hl", "../outside/victim")], lambda b: "hl", "'..'"
    ),
    "hard link to a name not extracted": Hostile(
        lambda b: [hard("hl", "nothere")], lambda b: "hl", "not a file extracted"
    ),
    "hard link to a symlink": Hostile(
        lambda b: [sym("s", "x"), hard("hl", "s")], lambda b: "hl", "not a file extracted"
    ),
    "character device": Hostile(
        lambda b: [special("null", tarfile.CHRTYPE)], lambda b: "null", "character device"
    ),
    "block device": Hostile(
        lambda b: [special("sda", tarfile.BLKTYPE)], lambda b: "sda", "block device"
    ),
    "FIFO": Hostile(lambda b: [special("fifo", tarfile.FIFOTYPE)], lambda b: "fifo", "a FIFO"),
    "unknown member type": Hostile(lambda b: [special("odd", b"Z")], lambda b: "odd", "type b'Z'"),
    "destination made a file": Hostile(
        lambda b: [reg(".", b"x")], lambda b: ".", "must be a directory"
    ),
    "file past max_bytes": Hostile(
        lambda b: [reg("big", b"x" * 101)],
        lambda b: "big",
        "max_bytes=100",
        ArchiveLimitError,
        CopyLimits(max_bytes=100),
    ),
    "files adding up past max_bytes": Hostile(
        lambda b: [reg("one", b"x" * 60), reg("two", b"y" * 60)],
        lambda b: "two",
        r"its 60 bytes would pass max_bytes=100 \(60 bytes",
        ArchiveLimitError,
        CopyLimits(max_bytes=100),
    ),
    "too many members": Hostile(
        lambda b: [reg(f"f{i}") for i in range(5)],
        lambda b: "f2",
        "more than max_members=3",
        ArchiveLimitError,
        CopyLimits(max_members=3),
    ),
}


@pytest.mark.parametrize("case", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_archive_is_refused_and_nothing_outside_changes(box: Path, case: Hostile) -> None:
    before = outside_view(box, box / "dest")
    with pytest.raises(case.error) as caught:
        feed(case.entries(box), box / "dest", case.limits)
    assert caught.value.member == case.member(box)
    assert re.search(case.reason, caught.value.reason), caught.value.reason
    assert str(caught.value).startswith(f"copy_out to {box / 'dest'}: refused member ")
    assert outside_view(box, box / "dest") == before
    assert Path(victim(box)).read_bytes() == b"original\n"


def test_limits_refuse_before_writing_and_keep_what_came_before(box: Path) -> None:
    with pytest.raises(ArchiveLimitError):
        feed([reg("one", b"x" * 60), reg("two", b"y" * 60)], box / "dest", CopyLimits(100))
    assert (box / "dest" / "one").read_bytes() == b"x" * 60
    assert not (box / "dest" / "two").exists()


def test_a_file_cut_short_is_removed(box: Path) -> None:
    data = tar_bytes([folder("."), reg("whole", b"w" * 100), reg("cut", b"c" * 5000)])
    cut_at = data.index(b"c" * 100) + 1000
    with pytest.raises(GuestOpError, match="unexpected end of data"):
        transfer.extract_tar(pipe_of(data[:cut_at]), box / "dest")
    assert sorted(p.name for p in (box / "dest").iterdir()) == ["whole"]


def test_an_oversized_extended_header_is_refused_before_it_is_read(box: Path) -> None:
    info, data = reg("x")
    info.pax_headers = {"comment": "c" * (2 << 20)}
    with pytest.raises(ArchiveLimitError, match="extended header of") as caught:
        feed([(info, data)], box / "dest")
    assert "PaxHeader" in caught.value.member
    assert not (box / "dest" / "x").exists()


def test_endlessly_chained_extended_headers_are_refused(box: Path) -> None:
    info, data = reg("x")
    info.pax_headers = {"comment": "c"}
    pax_block = info.tobuf(tarfile.PAX_FORMAT)[:-512]  # the pax header without its member
    archive = folder(".")[0].tobuf(tarfile.PAX_FORMAT) + pax_block * 5000
    archive += tar_bytes([(info, data)])
    with pytest.raises(UnsafeArchiveError, match="too many chained extended headers"):
        transfer.extract_tar(pipe_of(archive), box / "dest")


def test_a_single_file_archive_holds_one_member(box: Path) -> None:
    data = tar_bytes([reg("tool", b"t"), reg("../outside/victim", b"PWNED")])
    with pytest.raises(UnsafeArchiveError, match="a second member after a single file") as caught:
        transfer.extract_tar(pipe_of(data), box / "out" / "renamed")
    assert caught.value.member == "../outside/victim"
    assert (box / "out" / "renamed").read_bytes() == b"t"
    assert Path(victim(box)).read_bytes() == b"original\n"


# --- what lies in the destination already: replaced, never written through -----------------


def test_a_symlink_already_in_the_destination_is_replaced_not_followed(box: Path) -> None:
    (box / "dest").mkdir()
    (box / "dest" / "name").symlink_to(victim(box))
    feed([reg("name", b"new")], box / "dest")
    assert not (box / "dest" / "name").is_symlink()
    assert (box / "dest" / "name").read_bytes() == b"new"
    assert Path(victim(box)).read_bytes() == b"original\n"


def test_a_symlinked_dir_already_in_the_destination_is_not_entered(box: Path) -> None:
    (box / "dest").mkdir()
    (box / "dest" / "hostdir").symlink_to(box / "outside")
    before = outside_view(box, box / "dest")
    with pytest.raises(UnsafeArchiveError, match="below the symlink 'hostdir'"):
        feed([reg("hostdir/victim", b"PWNED")], box / "dest")
    assert outside_view(box, box / "dest") == before


def test_a_file_replacing_a_hard_link_does_not_write_through_it(box: Path) -> None:
    feed([reg("a", b"first"), hard("b", "a"), reg("b", b"second")], box / "dest")
    assert (box / "dest" / "a").read_bytes() == b"first"
    assert (box / "dest" / "b").read_bytes() == b"second"


# --- the good cases --------------------------------------------------------------------------


def modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode)
        for p in root.rglob("*")
        if not p.is_symlink()
    }


def test_a_tree_keeps_dirs_files_links_modes_and_mtimes(box: Path) -> None:
    entries = [
        folder("sub", 0o750),
        folder("sub/deeper", 0o700),
        folder("open", 0o1777),
        reg("run.sh", b"#!/bin/sh\n", 0o755, mtime=1_600_000_000),
        reg("sub/secret", b"s", 0o600),
        reg("sub/deeper/suid", b"x", 0o4755),
        reg("shared", b"x", 0o666),
        reg("readonly", b"x", 0o444),
        reg("implicit/parents/file", b"p"),
        sym("sub/deeper/up", "../../run.sh"),
        sym("here", "."),
        sym("dangling", "sub/none"),
        hard("sub/again", "run.sh"),
    ]
    feed(entries, box / "dest")
    dest = box / "dest"
    assert modes(dest) == {
        "sub": 0o750, "sub/deeper": 0o700, "open": 0o755, "run.sh": 0o755,
        "sub/secret": 0o600, "sub/deeper/suid": 0o755, "shared": 0o644, "readonly": 0o644,
        "implicit": modes(dest)["implicit"], "implicit/parents": modes(dest)["implicit/parents"],
        "implicit/parents/file": 0o644, "sub/again": 0o755,
    }  # fmt: skip
    assert (dest / "run.sh").stat().st_mtime == 1_600_000_000
    assert (dest / "sub/deeper/up").read_bytes() == b"#!/bin/sh\n"
    assert str((dest / "here").readlink()) == "."
    assert str((dest / "dangling").readlink()) == "sub/none"
    assert (dest / "sub/again").stat().st_ino == (dest / "run.sh").stat().st_ino


def test_a_directory_merges_into_an_existing_destination(box: Path) -> None:
    (box / "dest" / "sub").mkdir(parents=True)
    (box / "dest" / "sub" / "kept").write_text("host")
    feed([folder("sub"), reg("sub/new", b"guest")], box / "dest")
    assert (box / "dest" / "sub" / "kept").read_text() == "host"
    assert (box / "dest" / "sub" / "new").read_bytes() == b"guest"


def test_limits_that_fit_exactly_pass(box: Path) -> None:
    entries = [reg("a", b"x" * 50), reg("b", b"y" * 50), hard("c", "a")]
    feed(entries, box / "dest", CopyLimits(max_bytes=100, max_members=4))
    assert (box / "dest" / "c").read_bytes() == b"x" * 50


@pytest.mark.parametrize(
    "limits", [dict(max_bytes=-1), dict(max_members=0)], ids=["bytes", "members"]
)
def test_limits_must_be_positive(limits: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="copy limits must be positive"):
        CopyLimits(**limits)


def test_names_that_are_not_utf8_keep_their_bytes(box: Path) -> None:
    name = os.fsdecode(b"caf\xe9")
    feed([reg(name, b"latin-1"), sym(os.fsdecode(b"l\xff"), name)], box / "dest")
    assert sorted(os.fsencode(p.name) for p in (box / "dest").iterdir()) == [b"caf\xe9", b"l\xff"]
    assert (box / "dest" / os.fsdecode(b"l\xff")).read_bytes() == b"latin-1"
