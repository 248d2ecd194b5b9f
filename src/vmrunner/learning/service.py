"""``LearningService``: the one entry point the CLI, the HTTP API and MCP tools call.

Every method returns a frozen dataclass with ``to_dict()``. Recording is safe from
several processes at once (see ``store``); queries see committed data only.
A failed ``vmrunner run`` attaches ``explain(run_id).to_dict()`` as its
``learning`` field, after recording the run's observations.

Raises ``StoreError`` (from ``vmrunner.errors``) when the database fails; a command
or run that was never seen is not an error (empty results, ``found=False``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain, islice
from types import TracebackType
from typing import Any

from vmrunner.config import Settings
from vmrunner.learning import insights, reader, stats, writer
from vmrunner.learning.batch import ALL_REPOS, prepare
from vmrunner.learning.graph import ego_graph, load_graph, usual_sequence
from vmrunner.learning.normalise import family, normalise
from vmrunner.learning.predict import predict, prior_rate
from vmrunner.learning.results import (
    LearningStats,
    Lessons,
    LevelEstimate,
    Observation,
    Prediction,
    RecordSummary,
    Related,
    RunExplanation,
)
from vmrunner.learning.store import Store, open_store


@dataclass(frozen=True)
class LearningConfig:
    """Tunables of the learning rules (defaults are what the documentation describes).

    ``lesson_min_occurrences``: occurrences that make a signature a lesson.
    ``min_support``: observations a context level needs before prediction uses it.
    ``prior_strength``: pseudo-observations pulling a level toward its parent.
    ``similarity_threshold``: share of equal tokens that clusters two signatures.
    ``batch_size``: observations per write transaction in ``record``.
    """

    lesson_min_occurrences: int = 3
    min_support: int = 5
    prior_strength: float = 4.0
    similarity_threshold: float = 0.6
    batch_size: int = 10000
    busy_timeout_s: float = 30.0


def _batches(items: Iterable[Observation], size: int) -> Iterator[list[Observation]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch


class LearningService:
    """Records observations and answers the learning queries over one store."""

    def __init__(self, store: Store, config: LearningConfig | None = None) -> None:
        self.store = store
        self.config = config or LearningConfig()
        self._resolver = writer.SignatureResolver(self.config.similarity_threshold)

    @classmethod
    def open(cls, db_url: str, config: LearningConfig | None = None) -> LearningService:
        """Open (and migrate) the store at ``db_url``."""
        cfg = config or LearningConfig()
        return cls(open_store(db_url, busy_timeout_s=cfg.busy_timeout_s), cfg)

    @classmethod
    def from_settings(
        cls, settings: Settings, config: LearningConfig | None = None
    ) -> LearningService:
        """Open the store named by ``settings.db_url`` (SQLite in the state dir by default)."""
        return cls.open(settings.db_url, config)

    def close(self) -> None:
        """Release the database connections (idempotent)."""
        self.store.close()

    def __enter__(self) -> LearningService:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def record(self, observations: Iterable[Observation]) -> RecordSummary:
        """Store ``observations`` in transactions of ``batch_size``; each batch is all-or-nothing.

        Normalisation and signatures are computed before the write lock is taken;
        with more than one batch, the next batch is prepared while the previous one
        is written (in one helper thread, so batches still commit in order). On a
        ``StoreError`` the batches before the failing one stay committed.
        """
        totals = [0, 0, 0]

        def add(s: RecordSummary) -> None:
            totals[0] += s.recorded
            totals[1] += s.failures
            totals[2] += s.new_signatures

        batches = _batches(observations, self.config.batch_size)
        first = next(batches, None)
        second = next(batches, None) if first is not None else None
        if first is not None and second is None:
            add(writer.record(self.store, self._resolver, [prepare(o) for o in first]))
        elif first is not None and second is not None:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="learn-write") as pool:
                pending: Future[RecordSummary] | None = None
                for batch in chain([first, second], batches):
                    prepared = [prepare(o) for o in batch]
                    if pending is not None:
                        add(pending.result())
                    pending = pool.submit(writer.record, self.store, self._resolver, prepared)
                if pending is not None:
                    add(pending.result())
        return RecordSummary(recorded=totals[0], failures=totals[1], new_signatures=totals[2])

    def predict(
        self, command: str, *, repo: str | None = None, after: str | None = None
    ) -> Prediction:
        """The probability that ``command`` succeeds, backing off from ``repo`` + ``after``
        to the repository, everywhere, then the command's family (see ``predict``)."""
        norm, fam = normalise(command), family(command)
        prev = normalise(after) if after else None
        with self.store.read() as conn:
            chain = reader.level_chain(conn, norm, fam, repo, prev)
            total, ok = reader.totals(conn)
        chosen, estimates = predict(
            chain,
            total,
            ok,
            strength=self.config.prior_strength,
            min_support=self.config.min_support,
        )
        return Prediction(
            command=command,
            normalised=norm,
            family=fam,
            probability=chosen.probability,
            observations=chosen.n,
            interval=(chosen.low, chosen.high),
            level=chosen.level,
            levels=tuple(LevelEstimate(e.level, e.key, e.n, e.probability) for e in estimates),
            baseline=prior_rate(total, ok),
        )

    def related(self, command: str, *, repo: str | None = None, limit: int = 10) -> Related:
        """Commands before and after ``command`` (in ``repo``, or everywhere), the signatures
        it failed with, and the commands failing alongside it."""
        norm = normalise(command)
        scope = ALL_REPOS if repo is None else repo
        with self.store.read() as conn:
            n = reader.command_counts(conn, "repo", scope, norm).n
            return Related(
                command=command,
                normalised=norm,
                repo=repo,
                observations=n,
                usual_sequence=usual_sequence(ego_graph(conn, norm, scope), norm),
                before=reader.before(conn, norm, scope, limit),
                after=reader.after(conn, norm, scope, limit),
                failed_with=reader.failed_with(conn, norm, limit),
                co_failures=reader.co_failures(conn, norm, repo, limit),
            )

    def lessons(self, *, min_occurrences: int | None = None, limit: int = 50) -> Lessons:
        """Signatures seen at least ``min_occurrences`` times (default from the config)."""
        threshold = (
            self.config.lesson_min_occurrences if min_occurrences is None else min_occurrences
        )
        with self.store.read() as conn:
            return Lessons(threshold, insights.lessons(conn, threshold, limit))

    def explain(self, run_id: str) -> RunExplanation:
        """For each failed step of stored run ``run_id``: signature, history, lesson, flakiness."""
        with self.store.read() as conn:
            return insights.explain(conn, run_id, self.config.lesson_min_occurrences)

    def stats(self, *, top: int = 10) -> LearningStats:
        """Totals, success rates, top failures and signatures, flaky and slowest commands."""
        with self.store.read() as conn:
            return stats.stats(conn, top)

    def graph(self, *, repo: str | None = None, min_count: int = 1) -> Any:
        """The command graph as a ``networkx.DiGraph`` (see ``graph.load_graph``)."""
        with self.store.read() as conn:
            return load_graph(conn, repo, min_count)
