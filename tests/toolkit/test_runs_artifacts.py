"""``vmrunner runs artifacts ID [--download DIR]``: a kept run's artifacts, listed and
extracted (the real CLI in a subprocess, over a run kept in a real store)."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

from vmrunner.config import Settings
from vmrunner.services.core import Services
from vmrunner.toolkit.artifacts import ArtifactStore


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _keep_run(settings: Settings, files: dict[str, bytes]) -> tuple[str, str]:
    with Services(settings) as services:
        handle = services.accept("workflow", {}, title="t")
    store = ArtifactStore(handle.dir)
    art = store.create("job", "dist")
    data = _zip(files)
    store.blob(art.id).write_bytes(data)
    store.finalize("dist", len(data), "sha256:" + hashlib.sha256(data).hexdigest())
    return handle.id, "sha256:" + hashlib.sha256(data).hexdigest()


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vmrunner", "runs", "artifacts", *args],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_list_and_download(settings: Settings, vm_env: dict[str, str], tmp_path: Path) -> None:
    files = {"a.txt": b"one\n", "sub/b.bin": bytes(range(256))}
    run_id, digest = _keep_run(settings, files)
    listed = _cli([run_id, "--json", "--download", str(tmp_path / "out")], vm_env)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert [(a["name"], a["digest"]) for a in data["artifacts"]] == [("dist", digest)]
    got = {str(p.relative_to(tmp_path / "out" / "dist")): p.read_bytes()
           for p in (tmp_path / "out" / "dist").rglob("*") if p.is_file()}  # fmt: skip
    assert got == files


def test_unknown_run_and_name(settings: Settings, vm_env: dict[str, str], tmp_path: Path) -> None:
    run_id, _ = _keep_run(settings, {"x": b"x"})
    missing = _cli(["no-such-run"], vm_env)
    assert missing.returncode == 125 and "no-such-run" in missing.stderr
    bad = _cli([run_id, "--name", "nope", "--download", str(tmp_path / "o")], vm_env)
    assert bad.returncode == 125 and "no artifact named nope" in bad.stderr
