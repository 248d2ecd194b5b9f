"""System-test benchmark: time per phase and the whole cycle of ``vmrunner systest`` under TCG,
cold (mmdebstrap included: the recipe adds a package, so its base root file system is
not shared with the default image) and again with the cached build. Asserts nothing.

    .venv/bin/python bench/systest_bench.py [--keep-cache]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vmrunner.config import load_settings
from vmrunner.systest.recipe import load_text

RECIPE = """name: bench
packages: [netcat-openbsd]
users: [alice]
files:
  - {path: /etc/motd, content: "benchmark\\n"}
units:
  - name: hello.service
    content: |
      [Unit]
      Description=Hello
      [Service]
      Type=oneshot
      RemainAfterExit=yes
      ExecStart=/bin/echo hello
      [Install]
      WantedBy=multi-user.target
checks:
  - unit_active: hello.service
  - command: "nc -h 2>&1 | head -1"
  - file_contains: {path: /etc/motd, text: benchmark}
  - journal_lacks: "segfault"
"""


def run_once(recipe: Path, env: dict[str, str], out: Path) -> tuple[float, dict[str, object]]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "vmrunner", "systest", str(recipe), "--accel", "tcg", "-q",
         "--json", str(out)],
        env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    wall = time.monotonic() - started
    doc = json.loads(out.read_text())
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, file=sys.stderr)
    return wall, doc


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep-cache", action="store_true", help="do not drop the cached build first")
    args = ap.parse_args()
    settings = load_settings()
    image = load_text(RECIPE).image
    if not args.keep_cache:
        shutil.rmtree(settings.images_dir / image.name, ignore_errors=True)
        for tar in (settings.images_dir / ".base").glob(f"*-{image.base_digest()[:16]}.tar"):
            tar.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        recipe = Path(tmp, "bench.yml")
        recipe.write_text(RECIPE)
        env = {**os.environ, "VMRUNNER_HOME": str(Path(tmp, "state"))}
        for label in ("cold" if not args.keep_cache else "warm", "cached"):
            wall, doc = run_once(recipe, env, Path(tmp, f"{label}.json"))
            phases = "  ".join(f"{p['name']} {p['duration_s']:.1f}s" for p in doc["phases"])  # type: ignore[attr-defined]
            print(
                f"{label:>6}: {doc['status']} total {wall:.1f}s (document {doc['duration_s']:.1f}s)  {phases}"
            )


if __name__ == "__main__":
    main()
