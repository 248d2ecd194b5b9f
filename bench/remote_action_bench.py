"""Time from a cached remote JavaScript action to its ``main`` starting, against a ``run:``
step doing the same work, in one real VM.

Publishes a bare repository ``bench/noop`` (a node20 action whose main prints one line)
on this host, then runs one job through the real CLI (``vmrunner run``) with ``-n`` uses of
the action and ``-n`` ``run: node -e ...`` steps doing the same, and prints the median step
durations (from the result document), the first use (which copies the action into the
guest) apart. The action's tree is fetched before the VM boots (not part of a step).
Prints figures only; asserts nothing.

Usage: .venv/bin/python bench/remote_action_bench.py [-n 5] [--accel tcg]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ACTION = "runs: {using: node20, main: index.js}\n"
MAIN = 'console.log("noop main " + process.version);\n'


def _git(cwd: Path, *argv: str) -> None:
    subprocess.run(["git", "-C", str(cwd), "-c", "user.name=b", "-c", "user.email=b@e", *argv],
                   check=True, capture_output=True)  # fmt: skip


def _repo(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "c")
    return root


def _workflow(n: int) -> str:
    steps = [f"      - {{id: a{i}, uses: bench/noop@v1}}\n" for i in range(n)]
    steps += [f"      - id: r{i}\n        run: node -e '{MAIN.strip()}'\n" for i in range(n)]
    return "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n" + "".join(steps)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("--accel", default="tcg")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        work = _repo(tmp / "work", {"action.yml": ACTION, "index.js": MAIN})
        _git(work, "tag", "v1")
        subprocess.run(["git", "clone", "-q", "--bare", str(work), str(tmp / "remotes/bench/noop.git")],
                       check=True)  # fmt: skip
        repo = _repo(tmp / "repo", {".github/workflows/b.yml": _workflow(args.n)})
        env = {**os.environ, "VMRUNNER_HOME": str(tmp / "state"),
               "VMRUNNER_GITHUB_GIT_URL": f"file://{tmp}/remotes/{{owner}}/{{repo}}.git"}  # fmt: skip
        out = tmp / "result.json"
        cmd = [sys.executable, "-m", "vmrunner", "run", "--accel", args.accel, "--json", str(out)]
        subprocess.run(cmd, cwd=repo, env=env, capture_output=True, timeout=1800)
        steps = {s["id"]: s for s in json.loads(out.read_text())["jobs"][0]["steps"]}
    bad = [k for k, s in steps.items() if s["outcome"] != "success"]
    if bad:
        print("failed steps:", bad, file=sys.stderr)
    action = [steps[f"a{i}"]["duration_s"] for i in range(args.n)]
    run = [steps[f"r{i}"]["duration_s"] for i in range(args.n)]
    print(f"accel {args.accel}, {args.n} of each step in one VM")
    print(f"first use of the action (copied into the guest): {action[0] * 1000:8.1f} ms")
    print(
        f"cached action step, median of the rest:          {statistics.median(action[1:]) * 1000:8.1f} ms"
    )
    print(
        f"run: step doing the same, median:                {statistics.median(run) * 1000:8.1f} ms"
    )
    print(
        f"overhead of the action over run:, median:        {(statistics.median(action[1:]) - statistics.median(run)) * 1000:8.1f} ms"
    )


if __name__ == "__main__":
    main()
