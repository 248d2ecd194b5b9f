"""The part of Azure's blob protocol the toolkit's uploads use, onto local files.

``@actions/artifact`` uploads with the Azure SDK's ``uploadStream``: each block is a
``PUT ?comp=block&blockid=<base64>``, then ``PUT ?comp=blocklist`` commits them with an
XML ``<BlockList><Latest>id</Latest>...</BlockList>``. ``@actions/cache`` uploads with
``uploadFile``: one ``PUT`` (``x-ms-blob-type: BlockBlob``) up to 128 MiB, blocks above.
Every write counts against a size limit, so an oversized upload fails early.
"""

from __future__ import annotations

import hashlib
import shutil
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

CHUNK = 1 << 20


class TooLargeError(Exception):
    """An upload that passes its size limit."""


class BadBlockListError(Exception):
    """A block list that is not XML or names a block never staged."""


def block_file(blocks: Path, block_id: str) -> Path:
    """Where the staged block ``block_id`` is kept (its name hashed: ids are arbitrary)."""
    return blocks / hashlib.sha256(block_id.encode()).hexdigest()


def staged_size(blocks: Path) -> int:
    """The bytes staged so far under ``blocks``."""
    return sum(p.stat().st_size for p in blocks.glob("*")) if blocks.is_dir() else 0


async def receive(body: AsyncIterator[bytes], dest: Path, limit: int) -> int:
    """Write ``body`` to ``dest`` (replacing it); raises :class:`TooLargeError` (and
    removes the partial file) once more than ``limit`` bytes arrive."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    written = 0
    try:
        with tmp.open("wb") as out:
            async for chunk in body:
                written += len(chunk)
                if written > limit:
                    raise TooLargeError(f"the upload passes the limit of {limit} bytes")
                out.write(chunk)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(dest)
    return written


def parse_block_list(data: bytes) -> list[str]:
    """The block ids of a ``comp=blocklist`` body, in order."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise BadBlockListError(f"the block list is not XML: {exc}") from exc
    return [el.text or "" for el in root if el.tag in ("Latest", "Committed", "Uncommitted")]


def commit(blocks: Path, ids: list[str], dest: Path, limit: int) -> int:
    """Concatenate the staged blocks ``ids`` into ``dest``; returns its size. The staging
    directory is removed afterwards."""
    files = [block_file(blocks, i) for i in ids]
    missing = [i for i, f in zip(ids, files, strict=True) if not f.is_file()]
    if missing:
        raise BadBlockListError(f"the block list names blocks never staged: {missing[:3]}")
    total = sum(f.stat().st_size for f in files)
    if total > limit:
        raise TooLargeError(f"the upload passes the limit of {limit} bytes")
    tmp = dest.with_name(dest.name + ".part")
    with tmp.open("wb") as out:
        for f in files:
            with f.open("rb") as src:
                shutil.copyfileobj(src, out, CHUNK)
    tmp.replace(dest)
    shutil.rmtree(blocks, ignore_errors=True)
    return total


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of ``path``'s bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
