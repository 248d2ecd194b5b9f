"""The real npm clients (@actions/artifact 2.3.2, @actions/cache 4.1.0) against the
toolkit services on the host's loopback: what upload-artifact, download-artifact and
actions/cache do in a job."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from vmrunner.toolkit.artifacts import read_artifacts

from .clients import node, node_fails


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _files(root: Path) -> dict[str, bytes]:
    files = {
        "a.txt": b"hello artifact\n",
        "sub/b.bin": os.urandom(300_000),
        "sub/deeper/c.txt": b"x" * 10,
        "empty": b"",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def test_upload_then_download_in_another_process(start_service: Any, tmp_path: Path) -> None:
    svc = start_service()
    src = tmp_path / "src"
    files = _files(src)
    up = node(
        "artifact_client.cjs", ["upload", "my-art", str(src)], svc.env("build", tmp_path), tmp_path
    )
    kept = read_artifacts(tmp_path / "run1")
    assert [(a.name, a.size) for a in kept] == [("my-art", up["size"])]
    zipped = (tmp_path / "run1" / "artifacts" / f"{kept[0].id}.zip").read_bytes()
    assert (
        kept[0].digest == "sha256:" + hashlib.sha256(zipped).hexdigest() == "sha256:" + up["digest"]
    )
    dest = tmp_path / "dest"
    down = node(
        "artifact_client.cjs",
        ["download", "my-art", str(dest)],
        svc.env("test", tmp_path),
        tmp_path,
    )
    assert down["digestMismatch"] is False
    assert _tree(dest) == files
    listed = node("artifact_client.cjs", ["list"], svc.env("test", tmp_path), tmp_path)
    assert [(a["name"], a["size"], a["digest"]) for a in listed["artifacts"]] == [
        ("my-art", up["size"], kept[0].digest)
    ]


def test_same_name_twice_is_refused(start_service: Any, tmp_path: Path) -> None:
    svc = start_service()
    src = tmp_path / "src"
    _files(src)
    node("artifact_client.cjs", ["upload", "dup", str(src)], svc.env("a", tmp_path), tmp_path)
    err = node_fails(
        "artifact_client.cjs", ["upload", "dup", str(src)], svc.env("b", tmp_path), tmp_path
    )
    assert "409" in err and "already exists" in err


def test_oversized_artifact_is_refused(start_service: Any, tmp_path: Path) -> None:
    svc = start_service(artifact_limit=100_000)
    src = tmp_path / "src"
    (src).mkdir()
    (src / "big.bin").write_bytes(os.urandom(400_000))  # random: the zip stays big
    env = {**svc.env("a", tmp_path), "ACTIONS_ARTIFACT_UPLOAD_TIMEOUT_MS": "60000"}
    err = node_fails("artifact_client.cjs", ["upload", "big", str(src)], env, tmp_path)
    assert "limit of 100000 bytes" in err or "413" in err
    assert read_artifacts(tmp_path / "run1") == []


def test_bad_token_is_refused(start_service: Any, tmp_path: Path) -> None:
    svc = start_service()
    other = start_service(run="run2")  # a token of another run's service
    src = tmp_path / "src"
    _files(src)
    env = {**svc.env("a", tmp_path), "ACTIONS_RUNTIME_TOKEN": other.service.token("a")}
    err = node_fails("artifact_client.cjs", ["upload", "x", str(src)], env, tmp_path)
    assert "401" in err and "signature" in err
    assert read_artifacts(tmp_path / "run1") == []


def test_cache_saved_in_one_run_restored_in_the_next_by_restore_key(
    start_service: Any, tmp_path: Path
) -> None:
    first = start_service(run="run1")
    work = tmp_path / "work"
    (work / "deps").mkdir(parents=True)
    (work / "deps" / "lib.bin").write_bytes(os.urandom(200_000))
    (work / "deps" / "note.txt").write_text("cached\n")
    saved = _tree(work / "deps")
    out = node(
        "cache_client.cjs", ["save", "deps-linux-abc", "deps"], first.env("j", tmp_path), work
    )
    assert out["id"] > 0
    second = start_service(run="run2")
    for p in (work / "deps").iterdir():
        p.unlink()
    args = ["restore", "deps-linux-def", "deps-linux-,deps-", "deps"]
    res = node("cache_client.cjs", args, second.env("j", tmp_path), work)
    assert res["matched"] == "deps-linux-abc"
    assert _tree(work / "deps") == saved


def test_cache_miss_and_other_branch_scope(start_service: Any, tmp_path: Path) -> None:
    feature = start_service(run="run1", ref="refs/heads/feature")
    work = tmp_path / "work"
    (work / "d").mkdir(parents=True)
    (work / "d" / "f").write_text("feature's")
    node("cache_client.cjs", ["save", "k-1", "d"], feature.env("j", tmp_path), work)
    other = start_service(run="run2", ref="refs/heads/other")
    res = node("cache_client.cjs", ["restore", "k-1", "k-", "d"], other.env("j", tmp_path), work)
    assert res["matched"] is None  # another branch's cache is not visible
    again = start_service(run="run3", ref="refs/heads/feature")
    res = node("cache_client.cjs", ["restore", "k-2", "k-", "d"], again.env("j", tmp_path), work)
    assert res["matched"] == "k-1"
