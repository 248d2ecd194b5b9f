"""How long ``--network user``'s namespace, veth pair and two firewall tables take to set up
and tear down (root only). Prints figures; asserts nothing.

    sudo .venv/bin/python bench/netns_bench.py [rounds]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from vmrunner.vm import netns


@dataclass
class _Record:
    path: Path
    extra: dict[str, str] = field(default_factory=dict)

    def save(self) -> None:
        pass


def main(rounds: int) -> None:
    setup, cleanup = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            rec = _Record(Path(tmp) / f"vm-bench-{i:06x}")
            t0 = time.perf_counter()
            netns.setup(rec, ("10.9.0.0/16",))
            t1 = time.perf_counter()
            netns.cleanup(rec)
            t2 = time.perf_counter()
            setup.append(t1 - t0)
            cleanup.append(t2 - t1)
    for name, xs in (("setup", setup), ("cleanup", cleanup)):
        print(
            f"{name:8s} median {statistics.median(xs) * 1000:7.1f} ms  max {max(xs) * 1000:7.1f} ms  (n={len(xs)})"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
