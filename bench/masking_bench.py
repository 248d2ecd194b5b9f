"""Masking cost: time per line against the number of masks, and rebuild cost.

Prints figures; asserts nothing (the machine is noisy). Run: .venv/bin/python bench/masking_bench.py
"""

from __future__ import annotations

import os
import time

from vmrunner.workflow.masking import Masker


def per_line_us(masker: Masker, lines: list[str]) -> float:
    start = time.perf_counter()
    for line in lines:
        masker.mask_text(line)
    return (time.perf_counter() - start) / len(lines) * 1e6


def main() -> None:
    lines = [f"step {i}: compiling module_{i}.c with -O2 and friends ok" for i in range(20000)]
    hostile = ["a" * 4096] * 200
    for count in (0, 1, 16, 256):
        masker = Masker(os.urandom(12).hex() for _ in range(count))
        normal = per_line_us(masker, lines)
        short = Masker(["a", *(os.urandom(12).hex() for _ in range(count))])
        print(
            f"masks={count:4d}  normal line {normal:6.2f} us   "
            f"4 KiB line hit by a one-letter mask {per_line_us(short, hostile):8.1f} us"
        )
    masker = Masker()
    start = time.perf_counter()
    for _ in range(256):
        masker.add(os.urandom(256).hex())
        masker.mask_text("x")
    print(
        f"256 add-mask of 512 bytes (the byte cap), each followed by a line: {time.perf_counter() - start:.2f} s"
    )


if __name__ == "__main__":
    main()
