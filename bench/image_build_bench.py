"""Image build benchmark: the time of each step of ``build_image`` for a recipe with users,
files, units and run commands (each run in the build sandbox), warm (its bootstrapped base
taken from the image cache when there, hard-linked) or ``--cold`` (mmdebstrap included).
Builds into a temporary directory; asserts nothing. Needs root.

    .venv/bin/python bench/image_build_bench.py [--cold [--keep-base DIR]] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from vmrunner.config import load_settings
from vmrunner.images.builder import build_image
from vmrunner.images.recipe import FileSpec, Recipe, UnitSpec, UserSpec

UNIT = (
    "[Unit]\nDescription=b\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
)
RECIPE = Recipe(
    name="bench-layers",
    users=(UserSpec("alice"), UserSpec("bob", groups=("sudo",))),
    files=(FileSpec("/etc/motd", "bench\n"), FileSpec("/home/alice/x", "x\n", owner="alice:alice")),
    units=(UnitSpec("bench.service", UNIT),),
    run=("echo a > /etc/bench-a", "id -u > /etc/bench-uid", "chmod 4755 /etc/bench-a"),
)


def build_once(cold: bool, keep_base: Path | None = None) -> list[tuple[str, float]]:
    """The steps of one build of ``RECIPE`` and the seconds each took."""
    steps: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp, "images/.base")
        base.mkdir(parents=True)
        cached = load_settings().images_dir / ".base"
        name = f"{RECIPE.suite}-{RECIPE.base_digest()[:16]}.tar"
        if not cold and (cached / name).exists():
            os.link(cached / name, base / name)
        last = time.monotonic()

        def progress(message: str) -> None:
            nonlocal last
            now = time.monotonic()
            if steps:
                steps[-1] = (steps[-1][0], now - last)
            steps.append((message, 0.0))
            last = now

        build_image(RECIPE, Path(tmp, "images/bench-layers/x"), progress)
        if keep_base is not None:
            keep_base.mkdir(parents=True, exist_ok=True)
            (base / name).replace(keep_base / name)
    return steps[:-1]  # the last message is the summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cold", action="store_true", help="bootstrap with mmdebstrap too")
    ap.add_argument("--keep-base", type=Path, help="move the bootstrapped base tarball here")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    for run in range(args.runs):
        steps = build_once(args.cold, args.keep_base)
        total = sum(s for _, s in steps)
        print(f"run {run + 1}: total {total:.1f}s")
        for message, seconds in steps:
            print(f"  {seconds:7.2f}s  {message}")


if __name__ == "__main__":
    main()
