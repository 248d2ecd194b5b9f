"""``run_tool`` with real child processes: its result, its errors, and cancellation
through a ``CancelToken`` (the whole process group killed at once)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from vmrunner.cancel import CancelToken
from vmrunner.errors import BuildCancelledError, ImageBuildError
from vmrunner.procs import group_members, pid_alive, run_tool


def _wait_for_lines(path: Path, count: int, within: float = 10) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists():
            lines = path.read_text().split()
            if len(lines) >= count:
                return [int(x) for x in lines]
        time.sleep(0.02)
    pytest.fail(f"{path} never got {count} lines")


@pytest.mark.parametrize("cancel", [None, CancelToken()])
def test_output_and_failure_are_the_same_with_or_without_a_token(
    tmp_path: Path, cancel: CancelToken | None
) -> None:
    log = tmp_path / "log"
    assert run_tool(["sh", "-c", "echo out; echo err >&2"], timeout=10, what="echo", log=log,
                    cancel=cancel) == "out\n"  # fmt: skip
    assert log.read_bytes() == b"out\nerr\n"
    with pytest.raises(ImageBuildError, match="exit status: 3") as info:
        run_tool(["sh", "-c", "echo why >&2; exit 3"], timeout=10, what="fails", cancel=cancel)
    assert info.value.status == 3 and info.value.log_tail == "why"
    assert not isinstance(info.value, BuildCancelledError)
    assert run_tool(["cat"], timeout=10, what="cat", input_bytes=b"in", cancel=cancel) == "in"


def test_timeout_still_applies_with_a_token(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(ImageBuildError, match="timed out after 1 s") as info:
        run_tool(["sh", "-c", "echo started; exec sleep 300"], timeout=1, what="slow",
                 log=tmp_path / "log", cancel=CancelToken())  # fmt: skip
    assert not isinstance(info.value, BuildCancelledError)
    assert "started" in info.value.log_tail
    assert (tmp_path / "log").read_text() == "started\n"
    assert time.monotonic() - started < 15


def test_cancel_kills_the_whole_group_at_once(tmp_path: Path) -> None:
    """A shell with a background ``sleep`` and a foreground one: setting the token ends
    ``run_tool`` with ``BuildCancelledError`` and no process of the group is left."""
    pids = tmp_path / "pids"
    script = f"echo $$ > {pids}; sleep 300 & echo $! >> {pids}; sleep 301"
    cancel = CancelToken()
    raised: list[ImageBuildError] = []

    def body() -> None:
        try:
            run_tool(["sh", "-c", script], timeout=600, what="sleepers", cancel=cancel)
        except ImageBuildError as exc:  # BuildCancelledError is one
            raised.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    shell, sleeper = _wait_for_lines(pids, 2)
    assert len(group_members(shell)) == 3  # sh, both sleeps
    cancel.cancel()
    thread.join(60)  # the sleeps would run 300 s: still alive here means not cancelled
    assert not thread.is_alive(), "run_tool did not return after the token was set"
    [exc] = raised
    assert isinstance(exc, BuildCancelledError)
    assert "sleepers: cancelled" in str(exc) and exc.argv[0] == "sh"
    assert group_members(shell) == []
    assert not pid_alive(shell) and not pid_alive(sleeper)


def test_a_set_token_starts_nothing(tmp_path: Path) -> None:
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(BuildCancelledError, match="touch: cancelled"):
        run_tool(["touch", str(tmp_path / "made")], timeout=10, what="touch", cancel=cancel)
    assert not (tmp_path / "made").exists()
