"""A hostile guest (root in the VM) against the host side of ``vmrunner run``: real VMs
(TCG), the real CLI. One workflow, one VM per attack, and a job that must go on.

* ``big`` writes 1 GiB without a newline: vmrunner's peak RSS stays under a fixed bound,
  the line is cut with a warning and the next step runs;
* ``flood`` replaces /bin/sh by a program that prints forever: the next step fails with a
  clear error (its preparation is killed) and the run ends;
* ``files`` removes ``$GITHUB_ENV``, puts a directory in its place and adds a one-letter
  mask: each step fails or succeeds with a message; the document keeps its keys;
* ``ok`` runs meanwhile and succeeds, its output untouched by the other job's mask.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from vmrunner.results import validate_result

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("debian_image")]

RSS_BOUND_KIB = 300 * 1024

WORKFLOW = r"""
name: hostile
on: push
jobs:
  big:
    runs-on: ubuntu-latest
    steps:
      - name: one GiB, no newline
        run: head -c 1073741824 /dev/zero | tr '\0' x
      - name: after big
        run: echo "still here after the big line"
  flood:
    runs-on: ubuntu-latest
    steps:
      - name: replace sh
        run: printf '#!/bin/bash\nexec yes\n' > /tmp/fake-sh && chmod +x /tmp/fake-sh && mv /tmp/fake-sh /bin/sh
      - name: next step
        run: echo "never printed"
  files:
    runs-on: ubuntu-latest
    steps:
      - name: rm env
        run: rm "$GITHUB_ENV"
      - name: dir env
        continue-on-error: true
        run: rm "$GITHUB_ENV" && mkdir "$GITHUB_ENV"
      - name: fill the env files directory
        continue-on-error: true
        run: head -c 100M /dev/zero > "$(dirname "$GITHUB_ENV")/junk"
      - name: one letter mask
        run: |
          echo "::add-mask::s"
          echo "status is success"
      - name: last
        run: echo "files job went on"
  ok:
    runs-on: ubuntu-latest
    steps:
      - name: plain
        run: sleep 20; echo "status of ok is fine"
"""


def _git_repo(root: Path) -> Path:
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "hostile.yml").write_text(WORKFLOW.lstrip())
    for args in (["init", "-q", "-b", "main"], ["add", "-A"]):
        subprocess.run(["git", "-C", str(root), *args], check=True)
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.email=t@example.com", "-c", "user.name=t",
         "commit", "-qm", "init"],
        check=True,
    )  # fmt: skip
    return root


def _peak_rss_kib(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """VmHWM of ``proc`` (read until it exits; it only grows) in KiB."""
    peak, deadline = 0, time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"vmrunner run did not end within {timeout:.0f} s")
        try:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except OSError:
            pass
        time.sleep(0.5)
    return peak


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, int, dict[str, Any], str]:
    tmp = tmp_path_factory.mktemp("hostile")
    repo = _git_repo(tmp / "repo")
    state = tmp / "state"
    state.mkdir()
    out = tmp / "result.json"
    live = tmp / "live.txt"  # a file, so that writing the live output never blocks
    with live.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vmrunner", "run", "--accel", "tcg", "--json", str(out)],
            cwd=repo, env={**os.environ, "VMRUNNER_HOME": str(state)},
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        peak = _peak_rss_kib(proc, timeout=900)
    text = live.read_text("utf-8", "replace")
    doc: dict[str, Any] = json.loads(out.read_text())
    return proc.returncode, peak, doc, text


def _job(doc: dict[str, Any], job_id: str) -> dict[str, Any]:
    return next(j for j in doc["jobs"] if j["id"] == job_id)


def _step(job: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in job["steps"] if s["name"] == name)


def test_result_is_written_valid_and_other_jobs_went_on(hostile_run: Any) -> None:
    code, _, doc, text = hostile_run
    assert code == 1, text[-3000:]
    assert validate_result(doc) == []
    assert doc["status"] == "failure"
    assert _job(doc, "ok")["status"] == "success"
    assert "status of ok is fine" in _step(_job(doc, "ok"), "plain")["log_tail"]


def test_a_gib_without_newline_keeps_memory_bounded(hostile_run: Any) -> None:
    _, peak, doc, _ = hostile_run
    print(f"vmrunner peak RSS (VmHWM) during the run: {peak} KiB")
    assert 0 < peak < RSS_BOUND_KIB, f"peak RSS {peak} KiB"
    big = _job(doc, "big")
    first = _step(big, "one GiB, no newline")
    assert first["outcome"] == "success"
    assert "cut a line at 1048576 bytes" in first["log_tail"]
    assert _step(big, "after big")["outcome"] == "success"


def test_a_replaced_sh_fails_the_next_step_clearly(hostile_run: Any) -> None:
    _, _, doc, _ = hostile_run
    flood = _job(doc, "flood")
    assert flood["status"] == "failure"
    step = _step(flood, "next step")
    assert step["outcome"] == "failure"
    assert "preparation" in step["log_tail"] and "was killed" in step["log_tail"]


def test_env_file_attacks_and_a_one_letter_mask(hostile_run: Any) -> None:
    _, _, doc, _ = hostile_run
    files = _job(doc, "files")
    removed = _step(files, "rm env")
    assert removed["outcome"] == "success"
    assert "removed GITHUB_ENV" in removed["log_tail"]
    directory = _step(files, "dir env")
    assert (directory["outcome"], directory["conclusion"]) == ("failure", "success")
    assert "GITHUB_ENV (env) was replaced by something that is not a file" in directory["log_tail"]
    filled = _step(files, "fill the env files directory")
    assert (filled["outcome"], filled["conclusion"]) == ("failure", "success")
    assert "cannot read the step's environment files" in filled["log_tail"]
    masked = _step(files, "one letter mask")
    assert masked["outcome"] == "success"
    assert "***tatu*** i*** ***ucce***" in masked["log_tail"]
    assert _step(files, "last")["outcome"] == "success"
    assert files["status"] == "success"
