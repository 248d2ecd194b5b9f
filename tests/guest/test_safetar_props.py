"""The pure rules of safetar (tables, properties) and random archives that must stay inside."""

from __future__ import annotations

import os
import posixpath
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmrunner.errors import UnsafeArchiveError
from vmrunner.guest.protocol import GuestOpError
from vmrunner.guest.safetar import link_target_problem, member_parts

from .tarcraft import Entry, feed, folder, hard, outside_view, reg, resolve, sym

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("a", ("a",)),
        ("./a/./b/", ("a", "b")),
        ("a//b", ("a", "b")),
        (".", ()),
        ("./", ()),
        ("..a/...", ("..a", "...")),
    ],
)
def test_member_parts_of_good_names(name: str, parts: tuple[str, ...]) -> None:
    assert member_parts(name) == parts


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("//x", "absolute"),
        ("..", r"'\.\.'"),
        ("a/../b", r"'\.\.'"),
        ("./../x", r"'\.\.'"),
        ("a/..", r"'\.\.'"),
        ("a\0b", "NUL"),
        ("a\ud800b", "unencodable"),
    ],
)
def test_member_parts_refuses(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        member_parts(name)


@pytest.mark.parametrize(
    ("link", "target", "problem"),
    [
        (("l",), "x", None),
        (("l",), ".", None),
        (("l",), "x/y/", None),
        (("d", "l"), "../x", None),
        (("d", "l"), "./../x", None),
        (("d", "e", "l"), "../../a/b", None),
        (("l",), "../x", "climbs above"),
        (("d", "l"), "../../x", "climbs above"),
        (("l",), "/etc", "absolute"),
        (("l",), "", "empty"),
        (("l",), "a\0", "NUL"),
        (("l",), "\ud800", "unencodable"),
        (("l",), "a/../b", "after a name"),
        (("d", "l"), "a/..", "after a name"),
        (("d", "l"), "../a/../..", "after a name"),
    ],
)
def test_link_target_problem(link: tuple[str, ...], target: str, problem: str | None) -> None:
    found = link_target_problem(link, target)
    assert found is None if problem is None else found is not None and problem in found


PIECES = st.sampled_from(["a", "b", "..", ".", ""])
REL = st.lists(PIECES, min_size=1, max_size=4).map("/".join)


@given(st.one_of(REL, REL.map(lambda p: "/" + p)))
def test_accepted_names_stay_below_the_destination(name: str) -> None:
    try:
        parts = member_parts(name)
    except ValueError:
        return
    assert not {"", ".", ".."} & set(parts)
    assert posixpath.normpath(posixpath.join("/dest", *parts)).startswith("/dest")


@given(st.lists(st.sampled_from(["a", "b"]), min_size=1, max_size=4), REL)
def test_accepted_link_targets_stay_inside_lexically(link: list[str], target: str) -> None:
    if link_target_problem(tuple(link), target) is None:
        resolved = posixpath.normpath(posixpath.join("/dest", *link[:-1], target))
        assert resolved == "/dest" or resolved.startswith("/dest/")


KIND = st.sampled_from(["dir", "file", "sym", "hard"])
NICE = st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3).map("/".join)
NAME = st.integers(0, 7).flatmap(lambda i: REL if i == 0 else NICE)  # mostly names that pass
CLIMB = st.lists(st.sampled_from(["a", "b", ".."]), min_size=1, max_size=4).map("/".join)
TARGET = st.one_of(CLIMB, REL, st.just("ABS"), st.just("ABS/victim"))
MEMBER = st.tuples(KIND, NAME, TARGET)


def build(member: tuple[str, str, str], box: Path) -> Entry:
    kind, name, target = member
    target = target.replace("ABS", str(box / "outside"))
    if kind == "dir":
        return folder(name)
    if kind == "file":
        return reg(name, b"guest")
    return sym(name, target) if kind == "sym" else hard(name, target)


@settings(max_examples=300, deadline=None)
@given(st.lists(MEMBER, max_size=8))
def test_random_archives_never_reach_outside(members: list[tuple[str, str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        box = Path(tmp).resolve()
        (box / "outside").mkdir()
        (box / "outside" / "victim").write_bytes(b"original\n")
        dest = box / "dest"
        before = outside_view(box, dest)
        try:
            feed([build(m, box) for m in members], dest)
        except (UnsafeArchiveError, GuestOpError):
            pass
        assert outside_view(box, dest) == before
        for top, dirs, files in os.walk(dest):
            for name in [*dirs, *files]:
                real = resolve(str(Path(top, name)))
                assert real is None or re.match(re.escape(str(dest)) + "(/|$)", real), (name, real)
