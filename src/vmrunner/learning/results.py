"""The learning subsystem's input (``Observation``) and its typed, frozen results.

Every result has ``to_dict()`` giving plain JSON types (datetimes as ISO 8601), so
the CLI's ``--json``, the HTTP API and the MCP tools emit the same shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from vmrunner.learning.flaky import FlakySummary, Trend
from vmrunner.learning.jsonable import JsonMixin
from vmrunner.learning.lessons import CandidateFix


@dataclass(frozen=True)
class Observation:
    """One command vmrunner ran in a VM, and how it ended.

    ``run_id``/``job``/``step`` place it in a run (``step`` is its position in the
    job); ``prev_command`` is the command run just before it in the same job (``None``
    for the first). ``output`` is the tail of stdout and stderr, used only on failure;
    ``env`` is the job's environment (values of secret-looking names are hashed before
    storing). Success means ``exit_code == 0``: record a timeout as a non-zero code.
    ``finished_at`` should be timezone-aware (a naive one is taken as UTC).
    """

    command: str
    exit_code: int
    duration_s: float
    finished_at: datetime
    run_id: str
    job: str = ""
    step: int = 0
    step_name: str = ""
    repo: str = ""
    branch: str = ""
    workflow: str = ""
    commit: str = ""
    image: str = ""
    kind: str = "step"
    prev_command: str | None = None
    output: str | bytes = ""
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class RecordSummary(JsonMixin):
    """What one ``record`` call stored."""

    recorded: int
    failures: int
    new_signatures: int


@dataclass(frozen=True)
class LevelEstimate(JsonMixin):
    """The smoothed estimate at one context level (``key`` names the context)."""

    level: str
    key: str
    observations: int
    probability: float


@dataclass(frozen=True)
class Prediction(JsonMixin):
    """The probability that ``command`` succeeds, from the context ``level`` used.

    ``observations`` is the number of runs behind that level; ``interval`` is a 95 %
    Wilson interval; ``levels`` lists every level considered, most specific first;
    ``baseline`` is the overall success rate.
    """

    command: str
    normalised: str
    family: str
    probability: float
    observations: int
    interval: tuple[float, float]
    level: str
    levels: tuple[LevelEstimate, ...]
    baseline: float


@dataclass(frozen=True)
class Neighbour(JsonMixin):
    """A command seen next to another: how often, and how often the later one succeeded."""

    command: str
    count: int
    success_rate: float


@dataclass(frozen=True)
class SignatureRef(JsonMixin):
    """A signature and how many times it was seen in this context."""

    signature_id: str
    template: str
    count: int


@dataclass(frozen=True)
class Related(JsonMixin):
    """Commands that come before and after ``command``, the signatures it failed with,
    and the commands that also failed in the job runs where it failed.

    ``usual_sequence`` is the most frequent path through the command (up to three
    commands either side); ``observations`` counts its runs in the chosen scope.
    """

    command: str
    normalised: str
    repo: str | None
    observations: int
    usual_sequence: tuple[str, ...]
    before: tuple[Neighbour, ...]
    after: tuple[Neighbour, ...]
    failed_with: tuple[SignatureRef, ...]
    co_failures: tuple[Neighbour, ...]


@dataclass(frozen=True)
class ContextCount(JsonMixin):
    """How often a signature was seen in one ``repo/workflow/job`` context."""

    context: str
    count: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class Lesson(JsonMixin):
    """A failure signature seen at least the lesson threshold times.

    ``jobs`` are ``repo/workflow/job`` names; ``fix`` is the candidate fix from the
    last failing to the first passing run of the same job, when one passed later.
    """

    signature_id: str
    template: str
    example: str
    occurrences: int
    jobs: tuple[str, ...]
    repositories: tuple[str, ...]
    commands: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    fix: CandidateFix | None


@dataclass(frozen=True)
class Lessons(JsonMixin):
    """The lessons learnt, most frequent first."""

    min_occurrences: int
    lessons: tuple[Lesson, ...]


@dataclass(frozen=True)
class StepExplanation(JsonMixin):
    """Why a failed step probably failed, from what was seen before.

    ``occurrences_before`` counts the signature's occurrences before this one;
    ``seen_in`` lists the ``repo/workflow/job`` contexts it was seen in; ``flaky`` is
    true when the same command on the same commit both passed and failed.
    """

    job: str
    step: int
    step_name: str
    command: str
    normalised: str
    exit_code: int
    signature_id: str
    template: str
    occurrences: int
    occurrences_before: int
    seen_in: tuple[ContextCount, ...]
    lesson: Lesson | None
    flaky: bool
    passes_on_commit: int
    failures_on_commit: int


@dataclass(frozen=True)
class RunExplanation(JsonMixin):
    """The explanation of every failed step of a stored run (``found`` false if unknown)."""

    run_id: str
    found: bool
    failed_steps: tuple[StepExplanation, ...]


@dataclass(frozen=True)
class Totals(JsonMixin):
    observations: int
    successes: int
    success_rate: float
    runs: int
    job_runs: int
    commands: int
    signatures: int


@dataclass(frozen=True)
class RateRow(JsonMixin):
    """Success rate of one repository (step level) or job (job-run level)."""

    name: str
    runs: int
    successes: int
    success_rate: float


@dataclass(frozen=True)
class CommandCount(JsonMixin):
    command: str
    runs: int
    failures: int
    failure_rate: float


@dataclass(frozen=True)
class SlowCommand(JsonMixin):
    command: str
    runs: int
    mean_s: float
    max_s: float
    trend: Trend


@dataclass(frozen=True)
class LearningStats(JsonMixin):
    """Everything ``learn stats`` shows."""

    totals: Totals
    repositories: tuple[RateRow, ...]
    jobs: tuple[RateRow, ...]
    failing_commands: tuple[CommandCount, ...]
    signatures: tuple[SignatureRef, ...]
    flaky_commands: tuple[FlakySummary, ...]
    slowest_commands: tuple[SlowCommand, ...]


def ts_to_datetime(ts: float) -> datetime:
    """A stored timestamp (seconds since the epoch) as an aware UTC datetime."""
    return datetime.fromtimestamp(ts, tz=UTC)
