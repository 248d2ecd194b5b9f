"""Output that never lies about the text: user text and command output printed as they
are (no markup, no ``:emoji:`` codes, no wrapping when piped, no escape codes when piped),
through the real CLI; and on a terminal (a pty) the live display and colour."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from conftest import git_repo, vmrunner
from vmrunner.cli_live import LiveEvents, PlainEvents
from vmrunner.services.events import Event

TRICKY = "[/x] :v: 1:100:2 [bold]b[/] \x1b[31mred\x1b[0m \ufffd\x00end"


_repo = git_repo  # one git fixture repository helper, in conftest


def _events(job: str) -> list[Event]:
    return [
        Event("job", job=job, status="started"),
        Event("step", job=job, step="Run make :v:", status="started"),
        Event("log", TRICKY, job=job, stream="stdout"),
        Event("group", "grp [/x]", job=job),
        Event("log", "inside 1:100:2", job=job, stream="stderr"),
        Event("group", "", job=job),
        Event("annotation", "bad [/x] :x:", job=job, status="error"),
        Event(
            "step",
            job=job,
            step="Run make :v:",
            status="success",
            data={"outcome": "success", "duration_s": 1.25},
        ),  # fmt: skip
        Event("job", job=job, status="success"),
        Event("message", "done :x: [/x]"),
    ]


def test_plain_events_are_the_text_as_it_came() -> None:
    lines: list[str] = []
    sink = PlainEvents(lines.append)
    for event in _events("build [/x] :v:"):
        sink(event)
    assert "".join(lines) == (
        "[build [/x] :v:] ⭐ job started\n"
        "[build [/x] :v:] ▶ Run make :v:\n"
        f"[build [/x] :v:]   {TRICKY}\n"
        "[build [/x] :v:]   ▼ grp [/x]\n"
        "[build [/x] :v:]     inside 1:100:2\n"
        "[build [/x] :v:]   error: bad [/x] :x:\n"
        "[build [/x] :v:] ✅ Run make :v:: success [1.2s]\n"
        "[build [/x] :v:] 🏁 job success\n"
        "vmrunner: done :x: [/x]\n"
    )


def test_live_events_render_the_jobs_with_spinner_step_and_times() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120, emoji=False, markup=False)
    live = LiveEvents(console)
    for event in _events("build")[:2]:
        live(event)
    live(Event("job", job="test :v:", status="started"))
    console.print(live)
    table = _plain(buf.getvalue())
    assert re.search(r"build\s.*Run make :v: \(\d+s\)\s.*\d+s", table)
    assert "test :v:" in table and "starting" in table
    assert any(ch in table for ch in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")  # the dots spinner
    for event in _events("build")[2:]:
        live(event)
    assert "[build]   [/x] :v: 1:100:2 [bold]b[/] red" in _plain(buf.getvalue())  # the lines above
    buf.seek(0)
    buf.truncate(0)
    console.print(live)
    assert re.search(r"✅ build\s+success\s+\d+s", _plain(buf.getvalue()))


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


SKIPPED = """\
on: push
jobs:
  mac:
    name: "mac [/x] :v: 1:100:2 [bold]b[/] %s"
    runs-on: macos-latest
    steps: [{run: echo mac}]
"""


def test_piped_run_output_is_verbatim_unwrapped_and_without_escape_codes(
    tmp_path: Path, vm_env: dict[str, str]
) -> None:
    long = "w" * 400
    repo = _repo(tmp_path / "repo", {".github/workflows/p.yml": SKIPPED % long})
    proc = vmrunner(["run"], {**vm_env, "COLUMNS": "40"}, cwd=repo)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode()
    assert b"\x1b" not in proc.stdout + proc.stderr
    name = f"mac [/x] :v: 1:100:2 [bold]b[/] {long}"
    assert f"vmrunner: {name}: skipped: runs-on label 'macos-latest'" in text  # one line
    assert re.search(rf"^{re.escape(name)}\s+skipped\s", text, re.M)


def test_check_and_learn_print_markup_and_emoji_codes_as_written(
    tmp_path: Path, vm_env: dict[str, str]
) -> None:
    (tmp_path / "w [").mkdir()
    bad = tmp_path / "w [" / "x] :v: 1:100:2.yml"  # the path holds "[/x]"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: nope\n    steps:\n      - run: echo hi\n"
    )
    proc = vmrunner(["check", str(bad)], {**vm_env, "COLUMNS": "30"})
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert all(re.match(rf"{re.escape(str(bad))}:\d+:\d+: ", ln) for ln in lines), lines
    assert any(ln.startswith(f"{bad}:5:") for ln in lines)  # whole FILE:LINE:COL, unwrapped
    proc = vmrunner(["check", str(tmp_path / "missing [/x] :v:.yml")], vm_env)
    assert proc.returncode == 125 and b"missing [/x] :v:.yml does not exist" in proc.stderr
    proc = vmrunner(["learn", "predict", "make [/x] :v: 1:100:2 [bold]b[/]"], vm_env)
    assert proc.returncode == 0, proc.stderr
    assert b"for make [/x] :v: 1:100:2 [bold]b[/] (" in proc.stdout
    proc = vmrunner(["learn", "related", "make [/x] :v:"], vm_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"make [/x] :v:")


def test_help_is_shown_as_written(vm_env: dict[str, str]) -> None:
    proc = vmrunner(["run", "--help"], {**vm_env, "COLUMNS": "200"})
    assert proc.returncode == 0
    text = proc.stdout.decode()
    assert "--matrix <str>" in text and "K:V: only the matrix combinations" in text
    assert "\x1b" not in text


def _pty_run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, bytes]:
    """Run ``argv`` with stdout and stderr on a pty; returns its status and output."""
    main, child = pty.openpty()
    proc = subprocess.Popen(argv, stdout=child, stderr=child, stdin=subprocess.DEVNULL,
                            env=env, cwd=cwd)  # fmt: skip
    os.close(child)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([main], [], [], 120)
            if not ready:
                break
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the child closed the pty
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(main)
        status = proc.wait(timeout=120)
    return status, out


@pytest.mark.parametrize(("no_color", "coloured"), [(False, True), (True, False)])
def test_on_a_terminal_output_is_coloured_unless_no_color(
    tmp_path: Path, vm_env: dict[str, str], no_color: bool, coloured: bool
) -> None:
    repo = _repo(tmp_path / "repo", {".github/workflows/p.yml": SKIPPED % "x"})
    env = {k: v for k, v in vm_env.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(
        {"TERM": "xterm-256color", "COLUMNS": "120", **({"NO_COLOR": "1"} if no_color else {})}
    )
    status, out = _pty_run([sys.executable, "-m", "vmrunner", "run"], env, repo)
    assert status == 0, out
    assert b"mac [/x] :v: 1:100:2 [bold]b[/] x" in out
    assert (re.search(rb"\x1b\[[0-9;]*3[0-7]m|\x1b\[[0-9;]*38;", out) is not None) is coloured
    assert b"\x1b[?25l" in out  # the live display hid the cursor while it ran
