"""Learning from every command vmrunner runs.

Pure rules, each importable alone (no database, no networkx, no I/O): ``normalise``
(command normal forms and families), ``signature`` and ``cluster`` (error signatures),
``predict`` (back-off and calibration), ``lessons`` (candidate fixes), ``flaky``
(flakiness and duration trends), ``batch`` (rows and aggregate deltas), ``results``
(the typed answers, re-exported here) and ``jsonable``. Edges: ``models`` (the schema),
``store`` (engine, migrations, retrying transactions), ``writer``, ``reader``,
``insights``, ``stats`` and ``graph`` (networkx).

The callers' entry point is :class:`vmrunner.learning.service.LearningService`; import
it from there. Importing this package loads the result types only.
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

__all__ = [
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
