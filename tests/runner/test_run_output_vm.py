"""``vmrunner run`` in a real VM (TCG), piped: a step's output reaches stdout as the
command printed it (markup, emoji codes, ANSI, invalid UTF-8), act's ``--env`` and
``ACTIONS_ALLOW_UNSECURE_COMMANDS`` (set by the job) work in the guest. One VM boot."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import vmrunner

pytestmark = [pytest.mark.vm, pytest.mark.usefixtures("debian_image")]

WORKFLOW = r"""
on: push
jobs:
  out:
    runs-on: ubuntu-latest
    env:
      ACTIONS_ALLOW_UNSECURE_COMMANDS: true
    steps:
      - run: |
          printf '[/x] :v: 1:100:2 [bold]b[/] \033[31mred\033[0m \377\376 end\n'
          echo "::set-env name=FROM_SET_ENV::set by a command"
          echo "::add-path::/opt/added"
      - run: |
          echo "set-env=[$FROM_SET_ENV] path=[$PATH] flag=[$FROM_FLAG]"
"""


def test_step_output_is_verbatim_and_unsecure_commands_follow_the_job_env(
    tmp_path: Path, vm_env: dict[str, str]
) -> None:
    repo = tmp_path / "repo"
    (repo / ".github/workflows").mkdir(parents=True)
    (repo / ".github/workflows/w.yml").write_text(WORKFLOW)
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "c"]):  # fmt: skip
        subprocess.run(["git", "-C", str(repo), *argv], check=True)
    out = tmp_path / "r.json"
    args = ["run", "push", "--accel", "tcg", "--env", "FROM_FLAG=flag", "--json", str(out)]
    proc = vmrunner(args, {**vm_env, "COLUMNS": "30"}, timeout=600, cwd=repo)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    assert json.loads(out.read_text())["status"] == "success"
    line = "[/x] :v: 1:100:2 [bold]b[/] \x1b[31mred\x1b[0m \ufffd\ufffd end".encode()
    assert b"[out]   " + line + b"\n" in proc.stdout
    assert b"set-env=[set by a command] path=[/opt/added:" in proc.stdout
    assert b"flag=[flag]" in proc.stdout
    assert proc.stdout.count(b"\x1b") == 2  # only the command's own two
