"""The result document: one envelope for every kind of run (exec, workflow, systest),
its JSON Schema, and its rendering for people.

The CLI's ``--json`` output, the documents kept in the store and any API all come from
the same objects. Pure code: no I/O.
"""

from vmrunner.results.envelope import (
    ACTIVE_STATUSES,
    KINDS,
    RUN_STATUSES,
    SCHEMA_VERSION,
    ErrorEntry,
    RunStatus,
    envelope,
    interrupted,
    iso,
)
from vmrunner.results.exec import ExecDocument, exec_status
from vmrunner.results.render import render_text
from vmrunner.results.schema import RESULT_SCHEMA, validate_result
from vmrunner.results.workflow import (
    JOB_STATUSES,
    Annotation,
    JobEntry,
    JobStatus,
    RunDocument,
    StepConclusion,
    StepEntry,
)

__all__ = [
    "ACTIVE_STATUSES",
    "JOB_STATUSES",
    "KINDS",
    "RESULT_SCHEMA",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "Annotation",
    "ErrorEntry",
    "ExecDocument",
    "JobEntry",
    "JobStatus",
    "RunDocument",
    "RunStatus",
    "StepConclusion",
    "StepEntry",
    "envelope",
    "exec_status",
    "interrupted",
    "iso",
    "render_text",
    "validate_result",
]
