"""copy_in and copy_out through the real agent (whose "guest" is this host)."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from vmrunner.errors import ArchiveLimitError, ChannelError, UnsafeArchiveError, UserInputError
from vmrunner.guest import transfer
from vmrunner.guest.channel import GuestOpError

from .harness import agent_channel, run

pytestmark = pytest.mark.timeout(60)  # each test takes well under a second or two

MTIME = 1_600_000_000


def make_tree(root: Path) -> None:
    """A tree with a 0755 file, a 0600 file, a 0700 subdirectory, a symlink and binary data."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "secret").write_bytes(bytes(range(256)) * 3000)
    (root / "secret").chmod(0o600)
    (root / "sub" / "deeper" / "note.txt").write_text("deep\n")
    (root / "link").symlink_to("sub/deeper/note.txt")
    (root / "sub").chmod(0o700)
    for path in [root / "run.sh", root / "secret", root / "sub" / "deeper" / "note.txt"]:
        os.utime(path, (MTIME, MTIME))


def snapshot(root: Path) -> dict[str, tuple[int, str, bytes | str]]:
    """Every path under root with its permission bits, kind and content or link target."""
    seen: dict[str, tuple[int, str, bytes | str]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if path.is_symlink():
            seen[rel] = (0, "link", str(path.readlink()))
        elif path.is_dir():
            seen[rel] = (stat.S_IMODE(st.st_mode), "dir", "")
        else:
            seen[rel] = (stat.S_IMODE(st.st_mode), f"file@{int(st.st_mtime)}", path.read_bytes())
    return seen


def test_directory_tree_round_trip_keeps_modes_mtimes_and_links(tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    guest, back = tmp_path / "guest" / "tree", tmp_path / "back" / "tree"

    async def main() -> None:
        async with agent_channel() as (chan, _):
            await chan.copy_in(tmp_path / "src", str(guest), timeout=10)
            await chan.copy_out(str(guest), back, timeout=10)

    run(main)
    expected = snapshot(tmp_path / "src")
    assert expected["run.sh"][0] == 0o755 and expected["secret"][0] == 0o600
    assert expected["sub"][0] == 0o700
    assert snapshot(guest) == expected
    assert snapshot(back) == expected


def test_single_file_round_trip_lands_at_the_named_path(tmp_path: Path) -> None:
    src = tmp_path / "tool"
    src.write_bytes(os.urandom(3 * transfer.TRANSFER_CHUNK + 17))  # several data frames
    src.chmod(0o750)
    guest, back = tmp_path / "guest" / "bin" / "renamed", tmp_path / "back" / "again"

    async def main() -> None:
        async with agent_channel() as (chan, _):
            await chan.copy_in(src, str(guest), timeout=10)
            await chan.copy_out(str(guest), back, timeout=10)

    run(main)
    for copy in (guest, back):
        assert copy.read_bytes() == src.read_bytes()
        assert stat.S_IMODE(copy.stat().st_mode) == 0o750


def test_copy_errors_are_reported_and_the_channel_survives(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")

    async def main() -> None:
        async with agent_channel() as (chan, _):
            with pytest.raises(GuestOpError, match="No such file"):
                await chan.copy_out(str(tmp_path / "missing"), tmp_path / "out", timeout=10)
            with pytest.raises(GuestOpError, match="extracting into"):
                await chan.copy_in(blocker, str(blocker / "below"), timeout=10)
            with pytest.raises(UserInputError, match="no such host path"):
                await chan.copy_in(tmp_path / "missing", "/tmp/x", timeout=10)
            with pytest.raises(ValueError, match="absolute"):
                await chan.copy_out("relative/path", tmp_path / "out", timeout=10)
            assert await chan.ping(5) > 0

    run(main)


def test_copy_out_refuses_links_that_leave_the_destination(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "escape").symlink_to("/etc/passwd")

    async def main() -> None:
        async with agent_channel() as (chan, _):
            with pytest.raises(UnsafeArchiveError, match="is absolute") as caught:
                await chan.copy_out(str(tree), tmp_path / "out", timeout=10)
            assert caught.value.member == "./escape"
            assert await chan.ping(5) > 0

    run(main)
    assert not (tmp_path / "out" / "escape").exists()


def test_copy_out_limits_are_the_callers_and_named_when_passed(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "small").write_bytes(b"s" * 10)
    (tree / "big").write_bytes(b"b" * 1000)
    limits = transfer.CopyLimits(max_bytes=500)

    async def main() -> None:
        async with agent_channel() as (chan, _):
            with pytest.raises(ArchiveLimitError, match="max_bytes=500") as caught:
                await chan.copy_out(str(tree), tmp_path / "out", timeout=10, limits=limits)
            assert caught.value.member == "./big"
            await chan.copy_out(str(tree / "small"), tmp_path / "one", timeout=10, limits=limits)
            assert await chan.ping(5) > 0

    run(main)
    assert not (tmp_path / "out" / "big").exists()
    assert (tmp_path / "one").read_bytes() == b"s" * 10


def test_chunk_pipe_abort_unblocks_the_reader() -> None:
    async def main() -> None:
        pipe = transfer.ChunkPipe()
        reading = asyncio.create_task(asyncio.to_thread(pipe.read, 10))
        await asyncio.sleep(0.01)
        pipe.abort()
        with pytest.raises(transfer.TransferAborted):
            await reading

    run(main)


def test_copies_cut_short_by_their_timeout_leave_the_channel_usable(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.write_bytes(os.urandom(64 * 1024 * 1024))

    async def main() -> None:
        async with agent_channel() as (chan, _):
            with pytest.raises(ChannelError, match="copy_in timed out"):
                await chan.copy_in(big, str(tmp_path / "in" / "big"), timeout=0.05)
            await chan.copy_in(big, str(tmp_path / "in2" / "big"), timeout=30)
            with pytest.raises(ChannelError, match="copy_out timed out"):
                await chan.copy_out(str(big), tmp_path / "out" / "big", timeout=0.05)
            assert await chan.ping(5) > 0
            await chan.copy_out(str(big), tmp_path / "out2" / "big", timeout=30)

    run(main)
    assert (tmp_path / "in2" / "big").read_bytes() == big.read_bytes()
    assert (tmp_path / "out2" / "big").read_bytes() == big.read_bytes()
