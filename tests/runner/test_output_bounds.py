"""What a hostile guest's output can cost the host: line cuts, the spooled job log, the
add-mask caps, the internal commands' caps and the environment file checks."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.runner.output import MAX_LINE, JobLog, NullReporter, OutputSink
from vmrunner.runner.steps import (
    INTERNAL_OUTPUT_LIMIT,
    MAX_ENV_FILE_BYTES,
    MAX_SUMMARY_BYTES,
    StepSetupError,
    _read_file,
    internal,
)
from vmrunner.vm.machine import CommandResult, ExecOptions
from vmrunner.workflow.masking import MAX_MASKS, Masker


def _sink(masker: Masker | None = None) -> tuple[OutputSink, list[str]]:
    log: list[str] = []
    return OutputSink("job", masker or Masker(), NullReporter(), log), log


def test_a_line_without_newline_is_cut_and_memory_stays_bounded() -> None:
    sink, log = _sink()
    chunk = b"x" * 65536
    for _ in range(64):  # 4 MiB, no newline
        sink.stdout(chunk)
        assert len(sink._partial["stdout"]) <= MAX_LINE
    sink.stdout(b"tail\nnext line\n")
    assert log[0] == "x" * MAX_LINE
    assert log[1] == (
        f"##[warning]vmrunner cut a line at {MAX_LINE} bytes and dropped the "
        f"{64 * 65536 + 4 - MAX_LINE} bytes after it"
    )
    assert log[2] == "next line"
    assert not sink.invalid


def test_a_cut_never_shows_the_start_of_a_secret() -> None:
    sink, log = _sink(Masker(["SECRET-VALUE"]))
    sink.stdout(b"a" * (MAX_LINE - 6) + b"SECRET-VALUE and more")
    sink.close()
    assert log[0] == "a" * (MAX_LINE - 6)
    assert "SECR" not in "".join(log)


def test_an_overlong_workflow_command_fails_the_step() -> None:
    sink, _ = _sink()
    sink.stdout(b"::add-mask::" + b"k" * MAX_LINE + b"\n")
    assert sink.invalid == [f"a workflow command longer than {MAX_LINE} bytes was ignored"]


@given(st.lists(st.binary(max_size=40), max_size=10))
def test_lines_do_not_depend_on_how_output_is_chunked(chunks: list[bytes]) -> None:
    whole, log_whole = _sink()
    whole.stdout(b"".join(chunks))
    whole.close()
    parts, log_parts = _sink()
    for chunk in chunks:
        parts.stdout(chunk)
    parts.close()
    assert log_parts == log_whole


def test_add_mask_past_the_cap_fails_the_step_with_a_message() -> None:
    sink, log = _sink()
    sink.stdout(b"".join(b"::add-mask::value-%04d\n" % i for i in range(MAX_MASKS + 1)))
    assert len(sink.invalid) == 1 and "add-mask refused" in sink.invalid[0]
    assert log[-1].startswith("##[error]add-mask refused")


def test_job_log_spools_to_disk_caps_and_saves_masked(tmp_path: Path) -> None:
    log = JobLog(tmp_path, limit=20)
    for line in ("first s", "second", "third is dropped"):
        log.append(line)
    assert list(log) == [
        "first s",
        "second",
        "##[warning]vmrunner dropped the last 17 bytes of this log",
    ]
    out = tmp_path / "job.log"
    log.save(out, Masker(["s"]))
    assert out.read_text().splitlines()[:2] == ["fir***t ***", "***econd"]
    log.close()


class _Flooding:
    """A guest whose commands print ``chunk`` forever (or until told off)."""

    def __init__(self, chunk: bytes, timed_out: bool = False) -> None:
        self.chunk, self.timed_out, self.sent = chunk, timed_out, 0

    async def execute(self, argv: Sequence[str], opts: ExecOptions | None = None) -> CommandResult:
        assert opts is not None and opts.on_stdout is not None and opts.timeout
        while self.chunk and self.sent < 1 << 30:
            opts.on_stdout(self.chunk)
            self.sent += len(self.chunk)
        return CommandResult(tuple(argv), None if self.timed_out else 0, None, self.timed_out, 1.0)

    async def copy_in(self, host_src: Path, guest_dst: str, timeout: float = 300.0) -> None: ...
    async def copy_out(
        self, guest_src: str, host_dst: Path, timeout: float = 300.0, max_bytes: int | None = None
    ) -> None: ...


def test_an_internal_command_that_floods_is_stopped_at_its_cap() -> None:
    guest = _Flooding(b"y\n" * 4096)
    with pytest.raises(StepSetupError, match="printed more than 65536 bytes on stdout"):
        asyncio.run(internal(guest, "the step's preparation", ["sh", "-c", ":"]))
    assert guest.sent <= INTERNAL_OUTPUT_LIMIT + len(guest.chunk)


def test_an_internal_command_that_hangs_is_a_clear_step_error() -> None:
    with pytest.raises(StepSetupError, match="did not finish within 5 s"):
        asyncio.run(internal(_Flooding(b"", timed_out=True), "prep", ["sh"], timeout=5))


def test_env_files_missing_replaced_or_too_big(tmp_path: Path) -> None:
    sink, log = _sink()
    assert _read_file(tmp_path, "env", sink) == ""
    assert log[-1] == "##[warning]the step removed GITHUB_ENV; nothing was read from it"
    (tmp_path / "output").mkdir()
    with pytest.raises(StepSetupError, match=r"GITHUB_OUTPUT .* is not a file"):
        _read_file(tmp_path, "output", sink)
    (tmp_path / "path").symlink_to("/etc/passwd")
    with pytest.raises(StepSetupError, match=r"GITHUB_PATH .* is not a file"):
        _read_file(tmp_path, "path", sink)
    (tmp_path / "env").write_bytes(b"A=1\n" + b"x" * MAX_ENV_FILE_BYTES)
    with pytest.raises(StepSetupError, match=r"GITHUB_ENV is .* bytes, more than the limit"):
        _read_file(tmp_path, "env", sink)
    (tmp_path / "summary").write_bytes(b"#" * (MAX_SUMMARY_BYTES + 1))
    assert _read_file(tmp_path, "summary", sink) == ""
    assert "GITHUB_STEP_SUMMARY is" in log[-1] and "not kept" in log[-1]
    (tmp_path / "summary").write_bytes("ok ü\n".encode())
    assert _read_file(tmp_path, "summary", sink) == "ok ü\n"
