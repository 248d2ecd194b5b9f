"""The build's id range: root's entry in /etc/subuid and /etc/subgid, read as ``newuidmap``
reads it, refused when it would map the host's root or is too small, and the ``unshare``
options that run a command as root of a user namespace mapped to it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.errors import ImageBuildError
from vmrunner.images.builder import mmdebstrap_argv
from vmrunner.images.idmap import (
    RANGE_SIZE,
    IdRange,
    build_range,
    checked_range,
    parse_subid,
    userns_argv,
)
from vmrunner.images.recipe import Recipe


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("root:100000:65536\n", (100000, 65536)),
        ("alice:100000:65536\nroot:165536:65536\n", (165536, 65536)),
        ("0:200000:70000\n", (200000, 70000)),  # by uid, as newuidmap accepts
        ("root:300000:65536\nroot:100000:65536\n", (300000, 65536)),  # the first one
        ("rooty:1:65536\nroo:2:65536\n", None),
        ("root:x:65536\nroot:100000\nroot:100000:65536:9\n", None),  # malformed: skipped
        ("# root:1:2\n\n", None),
        ("", None),
    ],
)
def test_roots_first_entry_is_found(text: str, expected: tuple[int, int] | None) -> None:
    assert parse_subid(text) == expected


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["alice", "bob", "root", "0", "1000"]),
            st.integers(0, 2**32),
            st.integers(0, 2**32),
        ),  # fmt: skip
        max_size=8,
    )
)
def test_parse_finds_the_first_root_line_of_any_file(
    entries: list[tuple[str, int, int]],
) -> None:
    text = "".join(f"{name}:{start}:{count}\n" for name, start, count in entries)
    roots = [(start, count) for name, start, count in entries if name in ("root", "0")]
    assert parse_subid(text) == (roots[0] if roots else None)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (None, "has no range for root"),
        ((0, 65536), "must not contain id 0"),  # would map the build's root to the host's
        ((100000, 65535), "at least 65536"),
        ((2**32 - 65536, 65536), "cannot be the build's ids"),  # past the id space
    ],
)
def test_an_unusable_range_is_refused_naming_the_fix(
    entry: tuple[int, int] | None, message: str
) -> None:
    with pytest.raises(ImageBuildError, match=message) as info:
        checked_range(Path("/etc/subuid"), entry)
    assert "/etc/subuid" in str(info.value) and "scripts/bootstrap.sh" in str(info.value)


def test_the_range_is_read_from_both_files(tmp_path: Path) -> None:
    (tmp_path / "subuid").write_text("alice:100000:65536\nroot:231072:65536\n")
    (tmp_path / "subgid").write_text("root:300000:100000\n")
    assert build_range(tmp_path / "subuid", tmp_path / "subgid") == IdRange(231072, 300000)
    with pytest.raises(ImageBuildError, match="nope has no range for root"):
        build_range(tmp_path / "subuid", tmp_path / "nope")


def test_the_bootstrap_gives_root_a_usable_range() -> None:
    """What scripts/bootstrap.sh set up on this host (the builds below run with it)."""
    ids = build_range()
    assert ids.uid > 0 and ids.gid > 0 and ids.count == RANGE_SIZE


def test_mmdebstrap_runs_as_root_of_the_range() -> None:
    ids = IdRange(100000, 200000)
    argv = mmdebstrap_argv(Recipe(name="t"), Path("/x/base.tar"), ids=ids)
    assert argv[: len(userns_argv("unshare", ids))] == [
        "unshare", "--user", "--map-users=100000,0,65536", "--map-groups=200000,0,65536",
        "--setuid", "0", "--setgid", "0",
    ]  # fmt: skip
    assert "--mode=unshare" in argv and "--mode=root" not in argv
