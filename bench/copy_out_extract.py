"""Host-side copy_out extraction speed: safetar (member by member, dir fds) vs plain tarfile.

Builds in memory an archive of many small files spread over nested directories and
one of a single large file, then extracts each with ``transfer.extract_tar`` and
with ``tarfile.extractall`` (no checks at all: the floor), both fed through a
ChunkPipe. Prints the best of a few runs; asserts nothing.

Usage: .venv/bin/python bench/copy_out_extract.py [--files 20000] [--depth 4] [--mib 256]
"""

from __future__ import annotations

import argparse
import io
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from vmrunner.guest import transfer


def small_files(count: int, depth: int) -> bytes:
    """A directory archive of ``count`` 100-byte files, 100 per directory, ``depth`` deep."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_dir("."))
        for i in range(count):
            folder = "/".join(f"d{(i // 100) % 50}x{level}" for level in range(depth))
            if i % 100 == 0:
                for level in range(1, depth + 1):
                    tar.addfile(_dir("/".join(folder.split("/")[:level])))
            info = tarfile.TarInfo(f"{folder}/f{i}")
            info.size = 100
            tar.addfile(info, io.BytesIO(b"x" * 100))
    return buf.getvalue()


def one_file(mib: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_dir("."))
        info = tarfile.TarInfo("big")
        info.size = mib << 20
        tar.addfile(info, io.BytesIO(b"\xa5" * info.size))
    return buf.getvalue()


def _dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


def pipe_of(data: bytes) -> transfer.ChunkPipe:
    """The archive as copy_out's channel hands it over: 256 KiB data frames."""
    pipe = transfer.ChunkPipe()
    for at in range(0, len(data), transfer.TRANSFER_CHUNK):
        pipe.feed(data[at : at + transfer.TRANSFER_CHUNK])
    pipe.feed_eof()
    return pipe


def safe(data: bytes, dest: Path) -> None:
    transfer.extract_tar(pipe_of(data), dest)


def plain(data: bytes, dest: Path) -> None:
    """The unchecked floor (trusted archive): what extraction costs without any check."""
    with tarfile.open(fileobj=pipe_of(data), mode="r|") as tar:
        tar.extractall(dest)


def best(extract: Callable[[bytes, Path], None], data: bytes, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            extract(data, Path(tmp) / "dest")
            times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    many, big = small_files(args.files, args.depth), one_file(args.mib)
    for label, data, unit, amount in [
        (f"{args.files} files, {args.depth} dirs deep", many, "files/s", args.files),
        (f"one {args.mib} MiB file", big, "MiB/s", args.mib),
    ]:
        for name, extract in [("safetar", safe), ("tarfile.extractall", plain)]:
            seconds = best(extract, data)
            rate = amount / seconds
            print(f"{label:<28} {name:<19} {seconds:7.3f} s  {rate:10.0f} {unit}")


if __name__ == "__main__":
    main()
