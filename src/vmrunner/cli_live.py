"""A run's live events for people: plain lines when stdout is not a terminal (no escape
codes, the run's text exactly as it came), and on a terminal the same lines coloured
above a live display of the jobs and their current step, with spinners and elapsed
times. Text from the run is never read as markup or emoji codes.

:func:`run_events` picks the renderer; :class:`StageBar` shows an image build's stages.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from vmrunner.results.terminal import for_terminal

if TYPE_CHECKING:
    from vmrunner.services.events import Event

MARKS = {"success": "✅", "failure": "❌", "skipped": "⏭", "cancelled": "⏹"}
STYLES = {"success": "green", "failure": "red", "cancelled": "yellow", "skipped": "dim"}


def event_lines(event: Event, depth: dict[str, int]) -> Iterator[tuple[str, str, str]]:
    """The lines of ``event`` as ``(job, text, style)``; ``job`` is "" for vmrunner's own
    messages. ``depth`` (per job, the open ``::group::`` count) is updated."""
    job = event.job or ""
    if event.type == "message" or not job:
        yield "", f"vmrunner: {event.text}", "dim"
        return
    indent = "  " * depth.get(job, 0)
    if event.type == "log":
        yield job, f"{indent}  {event.text}", "yellow" if event.stream == "stderr" else ""
    elif event.type == "group":
        if event.text:
            yield job, f"{indent}  ▼ {event.text}", "magenta"
        depth[job] = depth.get(job, 0) + 1 if event.text else max(0, depth.get(job, 0) - 1)
    elif event.type == "annotation":
        style = {"error": "bold red", "warning": "yellow"}.get(event.status or "", "cyan")
        yield job, f"{indent}  {event.status}: {event.text}", style
    elif event.type == "step":
        yield job, *_step_line(event, depth)
    elif event.type == "job":
        if event.status == "started":
            yield job, "⭐ job started", "bold"
        else:
            yield job, f"🏁 job {event.status}", f"bold {STYLES.get(event.status or '', 'dim')}"


def _step_line(event: Event, depth: dict[str, int]) -> tuple[str, str]:
    if event.status == "started":
        depth[event.job or ""] = 0
        return f"▶ {event.step}", "bold blue"
    outcome = str(event.data.get("outcome", event.status))
    extra = " (continue-on-error)" if outcome != event.status else ""
    timed = " (timed out)" if event.data.get("timed_out") else ""
    took = float(event.data.get("duration_s", 0.0))
    text = f"{MARKS.get(outcome, '•')} {event.step}: {outcome}{timed}{extra} [{took:.1f}s]"
    return text, STYLES.get(event.status or "", "")


class PlainEvents:
    """Events as plain lines written to ``write``: ``[job] text``."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.depth: dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        for job, text, _style in event_lines(event, self.depth):
            self.write(f"[{job}] {text}\n" if job else f"{text}\n")


@dataclass
class _JobView:
    name: str
    started: float
    step: str = ""
    step_started: float = 0.0
    status: str = "running"
    finished: float | None = None


class LiveEvents:
    """Events on a terminal: coloured lines above a live table of the jobs (a spinner,
    the current step and elapsed times while running; the outcome once done)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.depth: dict[str, int] = {}
        self.jobs: dict[str, _JobView] = {}

    def __call__(self, event: Event) -> None:
        self._track(event)
        for job, text, style in event_lines(event, self.depth):
            line = Text()
            if job:
                line.append(f"[{job}] ", style="cyan")
            shown = for_terminal(text)  # colours kept; codes that act on the terminal shown
            body = Text.from_ansi(shown) if event.type == "log" else Text(shown)
            body.stylize(style)
            line.append_text(body)
            self.console.print(line, soft_wrap=True)

    def _track(self, event: Event) -> None:
        job, now = event.job or "", time.monotonic()
        if event.type == "job" and job:
            if event.status == "started":
                self.jobs[job] = _JobView(job, now)
            elif job in self.jobs:
                self.jobs[job].status, self.jobs[job].finished = event.status or "", now
        elif event.type == "step" and event.status == "started" and job in self.jobs:
            self.jobs[job].step, self.jobs[job].step_started = event.step or "", now

    def __rich__(self) -> Any:
        from rich.spinner import Spinner
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        now = time.monotonic()
        for view in self.jobs.values():
            if view.finished is None:
                step = f"{view.step} ({now - view.step_started:.0f}s)" if view.step else "starting"
                table.add_row(Spinner("dots", style="cyan"), Text(view.name, style="bold"),
                              Text(step), Text(f"{now - view.started:.0f}s", style="dim"))  # fmt: skip
            else:
                mark = MARKS.get(view.status, "•")
                table.add_row(Text(mark), Text(view.name), Text(view.status, style=STYLES.get(view.status, "")),
                              Text(f"{view.finished - view.started:.0f}s", style="dim"))  # fmt: skip
        return table


@contextlib.contextmanager
def run_events(console: Console) -> Iterator[Callable[[Event], None]]:
    """The sink for a run's events: live on a terminal, plain lines otherwise."""
    if not console.is_terminal:
        out = sys.stdout.buffer

        def write(text: str) -> None:
            out.write(text.encode("utf-8", "replace"))
            out.flush()

        yield PlainEvents(write)
        return
    from rich.live import Live

    live_view = LiveEvents(console)
    with Live(live_view, console=console, refresh_per_second=8, transient=True):
        yield live_view


class StageBar:
    """An image build's stages as a progress bar on a terminal (each progress message is
    one stage done); plain ``vmrunner: message`` lines elsewhere."""

    STAGES = 7  # kernel, bootstrap, unpack, agent, recipe layers, disk, initramfs

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> StageBar:
        if self.console.is_terminal:
            from rich.progress import (
                BarColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False),
                                     BarColumn(), TimeElapsedColumn(), console=self.console)  # fmt: skip
            self.progress.start()
            self.task = self.progress.add_task("image build", total=self.STAGES)
        return self

    def __call__(self, message: str) -> None:
        if self.progress is None:
            self.console.print(f"vmrunner: {message}", style="dim")
            return
        self.progress.update(self.task, description=message, advance=1)
        self.progress.console.print(Text(f"vmrunner: {message}", style="dim"))

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=self.STAGES)
            self.progress.stop()
