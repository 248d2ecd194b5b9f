"""A step's output on its way out: split into lines, workflow commands acted on, masked,
then shown (through a :class:`Reporter`) and kept (log, tail, annotations).

The reporter is how the live view is fed; the CLI implements it for a terminal. Nothing
here writes to a terminal itself.

Bounds (the guest is untrusted): a line is cut at :data:`MAX_LINE` bytes (its head is
shown at once, what follows up to the next newline is counted and dropped, then a warning
says how much), so splitting costs linear time and memory per stream is bounded; a job's
log is spooled to an unnamed file (:class:`JobLog`) and capped at :data:`MAX_LOG_BYTES`.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from vmrunner.results import Annotation, JobEntry, StepEntry
from vmrunner.workflow.commands import CommandParser
from vmrunner.workflow.masking import Masker, MaskLimitError

MAX_LINE = 1 << 20
"""Bytes of one output line that are kept; the rest of a longer line is dropped."""
MAX_LOG_BYTES = 1 << 30
"""Bytes of one job's log that are kept; later lines are dropped (a last line says so)."""


def mask_tree(masker: Masker, data: Any) -> Any:
    """A copy of JSON-like ``data`` with every string value masked. Keys are never
    masked: they are the document's structure, not output (and a short mask such as
    ``s`` would otherwise break ``status``)."""
    if isinstance(data, str):
        return masker.mask_text(data)
    if isinstance(data, dict):
        return {k: mask_tree(masker, v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [mask_tree(masker, v) for v in data]
    return data


class LogLines(Protocol):
    """Where a job's log lines go (a list in tests, a :class:`JobLog` in a run)."""

    def append(self, line: str, /) -> None: ...


class JobLog:
    """A job's log lines, spooled to an unnamed temporary file (in ``directory``, which
    may be removed meanwhile), not kept in memory. At most ``limit`` bytes are kept."""

    def __init__(self, directory: Path | None = None, limit: int = MAX_LOG_BYTES) -> None:
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (closed by close())
        self.size = 0
        self.dropped = 0
        self.limit = limit

    def append(self, line: str) -> None:
        """Add one line (a newline inside it splits it in the file)."""
        data = line.encode("utf-8", "surrogateescape") + b"\n"
        if self.size + len(data) > self.limit:
            self.dropped += len(data)
            return
        self._file.write(data)
        self.size += len(data)

    def __iter__(self) -> Iterator[str]:
        """The lines kept, then one saying how much was dropped (if any)."""
        self._file.flush()
        self._file.seek(0)
        for raw in self._file:
            yield raw.rstrip(b"\n").decode("utf-8", "replace")
        self._file.seek(0, 2)
        if self.dropped:
            yield f"##[warning]vmrunner dropped the last {self.dropped} bytes of this log"

    def save(self, path: Path, masker: Masker | None = None) -> None:
        """Write the log to ``path``, line by line (masked again with ``masker``)."""
        with path.open("w", encoding="utf-8", errors="surrogateescape") as out:
            for line in self:
                out.write((masker.mask_text(line) if masker is not None else line) + "\n")

    def close(self) -> None:
        self._file.close()


class Reporter(Protocol):
    """Receives the live events of a run, already masked. ``job`` is the job instance's
    display name; calls for parallel jobs interleave."""

    def job_started(self, job: str) -> None: ...
    def step_started(self, job: str, step: str) -> None: ...
    def line(self, job: str, text: str, stream: str) -> None: ...
    def group(self, job: str, title: str | None) -> None: ...
    def annotation(self, job: str, note: Annotation) -> None: ...
    def step_finished(self, job: str, step: StepEntry) -> None: ...
    def job_finished(self, job: str, entry: JobEntry) -> None: ...
    def message(self, text: str) -> None: ...


class NullReporter:
    """A reporter that shows nothing."""

    def job_started(self, job: str) -> None: ...
    def step_started(self, job: str, step: str) -> None: ...
    def line(self, job: str, text: str, stream: str) -> None: ...
    def group(self, job: str, title: str | None) -> None: ...
    def annotation(self, job: str, note: Annotation) -> None: ...
    def step_finished(self, job: str, step: StepEntry) -> None: ...
    def job_finished(self, job: str, entry: JobEntry) -> None: ...
    def message(self, text: str) -> None: ...


def unsecure_allowed(env: Mapping[str, str]) -> bool:
    """Whether ``ACTIONS_ALLOW_UNSECURE_COMMANDS`` in a step's ``env`` (any layer:
    workflow, job, step) enables ``::set-env::`` and ``::add-path::`` (``true`` in any
    case, spaces around ignored, as the runner's ``bool.TryParse``)."""
    return str(env.get("ACTIONS_ALLOW_UNSECURE_COMMANDS", "")).strip().lower() == "true"


class OutputSink:
    """Everything one step prints, stdout and stderr. Feed it raw chunks; call
    :meth:`close` when the command has ended. Memory per stream is bounded by
    :data:`MAX_LINE`; each byte fed is looked at a bounded number of times."""

    def __init__(
        self, job: str, masker: Masker, reporter: Reporter, log: LogLines, tail: int = 30,
        parent: OutputSink | None = None,
    ) -> None:  # fmt: skip
        self.job, self.masker, self.reporter, self.log = job, masker, reporter, log
        self.parent = parent  # a composite action's step: its lines also end the action's tail
        self.parser = CommandParser()
        self.tail: deque[str] = deque(maxlen=tail)
        self.annotations: list[Annotation] = []
        self.outputs: dict[str, str] = {}
        self.states: dict[str, str] = {}  # ::save-state:: (its action's scripts get STATE_*)
        self.invalid: list[str] = []
        self.set_env: dict[str, str] = {}  # ::set-env:: and ::add-path::, when allowed
        self.add_path: list[str] = []
        self._partial = {"stdout": bytearray(), "stderr": bytearray()}
        self._dropped = {"stdout": -1, "stderr": -1}  # -1: the current line was not cut

    def stdout(self, data: bytes) -> None:
        self._feed("stdout", data)

    def stderr(self, data: bytes) -> None:
        self._feed("stderr", data)

    def _feed(self, stream: str, data: bytes) -> None:
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            self._take(stream, data, start, end)
            self._end_line(stream)
            start = end + 1
        self._take(stream, data, start, len(data))

    def _take(self, stream: str, data: bytes, start: int, end: int) -> None:
        """Add ``data[start:end]`` (no newline in it) to the stream's current line."""
        buf = self._partial[stream]
        if self._dropped[stream] >= 0:
            self._dropped[stream] += end - start
            return
        room = MAX_LINE - len(buf)
        buf += data[start : min(end, start + room)]
        if end - start > room:
            self._cut(stream, end - start - room)

    def _cut(self, stream: str, dropped: int) -> None:
        """The line passed MAX_LINE: show its head now (never a secret's beginning)."""
        head = bytes(self._partial[stream])
        self._partial[stream].clear()
        self._dropped[stream] = dropped
        text = head[: self.masker.safe_length(head)].decode("utf-8", "replace")
        if text.startswith(("::", "##[")):
            message = f"a workflow command longer than {MAX_LINE} bytes was ignored"
            self.invalid.append(message)
            self._show(f"##[error]{message}", stream)
        else:
            self._show(text, stream)

    def _end_line(self, stream: str) -> None:
        buf, dropped = self._partial[stream], self._dropped[stream]
        if dropped >= 0:
            self._dropped[stream] = -1
            self.note(f"##[warning]vmrunner cut a line at {MAX_LINE} bytes and dropped the "
                      f"{dropped} bytes after it", stream)  # fmt: skip
            return
        text = buf.decode("utf-8", "replace")
        buf.clear()
        self.handle(text, stream)

    def close(self) -> None:
        for stream in ("stdout", "stderr"):
            if self._partial[stream] or self._dropped[stream] >= 0:
                self._end_line(stream)

    def note(self, text: str, stream: str = "stderr") -> None:
        """A line vmrunner itself adds to the step's output (an error message, say)."""
        self._show(text, stream)

    def handle(self, line: str, stream: str) -> None:
        """Act on one line of output."""
        parsed = self.parser.feed_line(line)
        kind = parsed.kind
        if kind == "add-mask":
            self._add_mask(parsed.data, stream)
            return
        if kind in ("group", "endgroup"):
            title = self.masker.mask_text(parsed.data) if kind == "group" else None
            self.reporter.group(self.job, title)
            self.log.append("##[endgroup]" if title is None else f"##[group]{title}")
            return
        if (note := parsed.annotation()) is not None:
            masked = Annotation(
                note.level, self.masker.mask_text(note.message), note.file, note.line, note.col,
                note.title and self.masker.mask_text(note.title),
            )  # fmt: skip
            self.annotations.append(masked)
            self.reporter.annotation(self.job, masked)
            self._keep(f"##[{note.level}]{masked.message}")
            return
        if kind == "set-output":
            self.outputs[parsed.properties.get("name", "")] = parsed.data
        elif kind == "save-state":
            self.states[parsed.properties.get("name", "")] = parsed.data
        elif kind == "set-env":
            self.set_env[parsed.properties.get("name", "")] = parsed.data
        elif kind == "add-path":
            self.add_path.append(parsed.data)
        if kind == "invalid":
            self.invalid.append(parsed.message or "invalid workflow command")
            self._show(f"##[error]{parsed.message}", stream)
            return
        if kind in ("text", "resume-commands", "stop-commands", "echo"):
            self._show(parsed.raw, stream)
        elif kind == "debug":
            self._keep(f"##[debug]{self.masker.mask_text(parsed.data)}")
        if parsed.message and kind != "invalid":
            self._show(f"##[warning]{parsed.message}", stream)

    def _add_mask(self, value: str, stream: str) -> None:
        if not value.strip():
            self._show(
                "##[warning]Can't add secret mask for empty string in ##[add-mask] command.", stream
            )
            return
        try:
            self.masker.add(value)
        except MaskLimitError as exc:  # the value may show later: fail the step
            self.invalid.append(str(exc))
            self._show(f"##[error]{exc}", stream)

    def _show(self, text: str, stream: str) -> None:
        masked = self.masker.mask_text(text)
        self.reporter.line(self.job, masked, stream)
        self._keep(masked)

    def _keep(self, masked: str) -> None:
        self.log.append(masked)
        sink: OutputSink | None = self
        while sink is not None:
            sink.tail.append(masked)
            sink = sink.parent

    def tail_text(self) -> str:
        return "\n".join(self.tail)
