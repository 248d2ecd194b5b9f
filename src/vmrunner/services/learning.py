"""The learning part of the service layer: record what ran, answer queries.

Opens the store named by the settings (SQLite in the state directory by default)
with the configured lesson threshold. Recording is best effort for callers that
run commands: a broken store is logged, never turned into a failed command.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from vmrunner.config import Settings
from vmrunner.errors import StoreError
from vmrunner.learning import Observation
from vmrunner.learning.service import LearningConfig, LearningService

log = logging.getLogger(__name__)


def open_learning(settings: Settings) -> LearningService:
    """The learning service over the configured database (migrated on open)."""
    settings.ensure_dirs()
    config = LearningConfig(lesson_min_occurrences=settings.lesson_min_occurrences)
    return LearningService.open(settings.db_url, config)


def record(
    settings: Settings, observations: Iterable[Observation], *, hints_for: str | None = None
) -> dict[str, object] | None:
    """Record ``observations``; with ``hints_for`` (the id of a failed run), return that
    run's learning hints as JSON-ready data, from the same store session. A store
    failure is logged, not raised (then the hints are None).
    """
    try:
        with open_learning(settings) as svc:
            svc.record(list(observations))
            return svc.explain(hints_for).to_dict() if hints_for else None
    except StoreError as exc:
        log.warning("could not record command outcomes: %s", exc)
        return None
