"""Benchmark of the learning store at scale.

Records a simulated history (default 1,000,000 observations) in batches, measuring
observations per second; replays it for calibration (fit on the first 90 %,
predict a sample of the last 10 %, Brier score against the base rate); then measures
the median and p99 latency of ``predict``, ``related`` and ``explain`` at full size.

    .venv/bin/python bench/learning_bench.py [--observations N] [--url URL] [--json OUT]

Goals (from the issue): at least 20,000 observations per second; p99 at most 20 ms.
Generating the history is not timed (it is reported separately).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from vmrunner.learning import Observation
from vmrunner.learning.predict import brier
from vmrunner.learning.service import LearningService
from vmrunner.learning.simulate import simulate

GOAL_RATE = 20_000
GOAL_P99_MS = 20.0


def _chunks(it: Iterator[Observation], size: int) -> Iterator[list[Observation]]:
    while chunk := list(islice(it, size)):
        yield chunk


def record(svc: LearningService, history: Iterator[Observation], n: int, batch: int,
           keep: list[Observation]) -> tuple[float, float]:  # fmt: skip
    """Record ``n`` observations; returns (seconds recording, seconds generating)."""
    rec = gen = 0.0
    remaining = n
    while remaining > 0:
        t0 = time.perf_counter()
        chunk = list(islice(history, min(batch, remaining)))
        t1 = time.perf_counter()
        svc.record(chunk)
        rec += time.perf_counter() - t1
        gen += t1 - t0
        remaining -= len(chunk)
        keep.extend(random.sample(chunk, min(len(chunk), 20)))
        if not chunk:
            break
    return rec, gen


def calibration(
    svc: LearningService, future: Sequence[Observation], samples: int
) -> dict[str, Any]:
    """Brier score of ``predict`` on a sample of ``future`` against the base rate."""
    baseline = svc.stats(top=1).totals.success_rate
    picked = random.Random(3).sample(list(future), min(samples, len(future)))
    ours = [(svc.predict(o.command, repo=o.repo, after=o.prev_command).probability, o.ok)
            for o in picked]  # fmt: skip
    base = [(baseline, o.ok) for o in picked]
    b_ours, b_base = brier(ours), brier(base)
    return {"samples": len(picked), "brier": b_ours, "brier_baseline": b_base,
            "skill": 1 - b_ours / b_base, "baseline_rate": baseline}  # fmt: skip


def latency(
    fn: Callable[[Observation], object], pool: Sequence[Observation], n: int
) -> dict[str, float]:
    rng = random.Random(5)
    times = []
    for _ in range(n):
        o = rng.choice(pool)
        t0 = time.perf_counter()
        fn(o)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"median_ms": statistics.median(times), "p99_ms": times[int(0.99 * (len(times) - 1))],
            "max_ms": times[-1]}  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    url = args.url or f"sqlite:///{Path(tempfile.mkdtemp(prefix='learnbench-')) / 'learn.db'}"
    svc = LearningService.open(url)
    history = simulate(args.observations, seed=args.seed)
    fit_n = int(args.observations * 0.9)
    pool: list[Observation] = []
    rec1, gen1 = record(svc, history, fit_n, args.batch, pool)
    t0 = time.perf_counter()
    future = list(history)
    gen2 = time.perf_counter() - t0
    calib = calibration(svc, future, args.calibration_samples)
    rec2, _ = record(svc, iter(future), len(future), args.batch, pool)
    failed = [o for o in pool if not o.ok]
    result = {
        "url": url.split("@")[-1],
        "observations": args.observations,
        "batch": args.batch,
        "record_s": rec1 + rec2,
        "obs_per_s": args.observations / (rec1 + rec2),
        "generate_s": gen1 + gen2,
        "calibration": calib,
        "predict": latency(lambda o: svc.predict(o.command, repo=o.repo, after=o.prev_command),
                           pool, args.queries),
        "related": latency(lambda o: svc.related(o.command), pool, args.queries),
        "explain": latency(lambda o: svc.explain(o.run_id), failed, args.queries),
        "stats_s": _timed(lambda: svc.stats()),
        "lessons_s": _timed(lambda: svc.lessons()),
    }  # fmt: skip
    svc.close()
    return result


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=10000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--calibration-samples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--url", default="", help="database URL (default: a fresh SQLite file)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = run(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    ok_rate = result["obs_per_s"] >= GOAL_RATE
    ok_p99 = all(result[q]["p99_ms"] <= GOAL_P99_MS for q in ("predict", "related", "explain"))
    print(f"goal >= {GOAL_RATE} obs/s: {'met' if ok_rate else 'MISSED'}; "
          f"p99 <= {GOAL_P99_MS} ms: {'met' if ok_p99 else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
