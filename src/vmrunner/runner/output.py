"""A step's output on its way out: split into lines, workflow commands acted on, masked,
then shown (through a :class:`Reporter`) and kept (log, tail, annotations).

The reporter is how the live view is fed; the CLI implements it for a terminal. Nothing
here writes to a terminal itself.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Protocol

from vmrunner.results import Annotation, JobEntry, StepEntry
from vmrunner.workflow.commands import CommandParser
from vmrunner.workflow.masking import Masker


def mask_tree(masker: Masker, data: Any) -> Any:
    """A copy of JSON-like ``data`` with every string (keys too) masked."""
    if isinstance(data, str):
        return masker.mask_text(data)
    if isinstance(data, dict):
        return {mask_tree(masker, k): mask_tree(masker, v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [mask_tree(masker, v) for v in data]
    return data


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


class OutputSink:
    """Everything one step prints, stdout and stderr. Feed it raw chunks; call
    :meth:`close` when the command has ended."""

    def __init__(
        self, job: str, masker: Masker, reporter: Reporter, log: list[str], tail: int = 30,
        parent: OutputSink | None = None,
    ) -> None:  # fmt: skip
        self.job, self.masker, self.reporter, self.log = job, masker, reporter, log
        self.parent = parent  # a composite action's step: its lines also end the action's tail
        self.parser = CommandParser()
        self.tail: deque[str] = deque(maxlen=tail)
        self.annotations: list[Annotation] = []
        self.outputs: dict[str, str] = {}
        self.invalid: list[str] = []
        self._partial = {"stdout": b"", "stderr": b""}

    def stdout(self, data: bytes) -> None:
        self._feed("stdout", data)

    def stderr(self, data: bytes) -> None:
        self._feed("stderr", data)

    def _feed(self, stream: str, data: bytes) -> None:
        buf = self._partial[stream] + data
        *lines, self._partial[stream] = buf.split(b"\n")
        for raw in lines:
            self.handle(raw.decode("utf-8", "replace"), stream)

    def close(self) -> None:
        for stream, rest in self._partial.items():
            if rest:
                self.handle(rest.decode("utf-8", "replace"), stream)
            self._partial[stream] = b""

    def note(self, text: str, stream: str = "stderr") -> None:
        """A line vmrunner itself adds to the step's output (an error message, say)."""
        self._show(text, stream)

    def handle(self, line: str, stream: str) -> None:
        """Act on one line of output."""
        parsed = self.parser.feed_line(line)
        kind = parsed.kind
        if kind == "add-mask":
            if parsed.data.strip():
                self.masker.add(parsed.data)
            return
        if kind in ("group", "endgroup"):
            self.reporter.group(
                self.job, self.masker.mask_text(parsed.data) if kind == "group" else None
            )
            self.log.append(
                f"{'##[group]' + self.masker.mask_text(parsed.data) if kind == 'group' else '##[endgroup]'}"
            )
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
