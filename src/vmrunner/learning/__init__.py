"""Learning from every command vmrunner runs.

Pure rules: ``normalise`` (command normal forms and families), ``signature`` and
``cluster`` (error signatures), ``predict`` (back-off and calibration), ``lessons``
(candidate fixes), ``flaky`` (flakiness and duration trends), ``batch`` (rows and
aggregate deltas). Edges: ``store`` (engine, migrations, retrying transactions),
``writer``, ``reader``, ``insights``, ``stats`` and ``graph`` (networkx). The
callers' entry point is ``LearningService``.
"""

from vmrunner.learning.results import (
    LearningStats,
    Lesson,
    Lessons,
    Observation,
    Prediction,
    RecordSummary,
    Related,
    RunExplanation,
    StepExplanation,
)
from vmrunner.learning.service import LearningConfig, LearningService

__all__ = [
    "LearningConfig",
    "LearningService",
    "LearningStats",
    "Lesson",
    "Lessons",
    "Observation",
    "Prediction",
    "RecordSummary",
    "Related",
    "RunExplanation",
    "StepExplanation",
]
