"""The systest result lives with every other result document in
:mod:`vmrunner.results.systest`; re-exported here for the systest phases."""

from vmrunner.results.systest import (
    ERROR_KINDS,
    PHASE_STATUSES,
    PHASES,
    SYSTEST_SCHEMA,
    Detail,
    Phase,
    SystestError,
    SystestResult,
    render_text,
    to_json,
)

__all__ = [
    "ERROR_KINDS",
    "PHASES",
    "PHASE_STATUSES",
    "SYSTEST_SCHEMA",
    "Detail",
    "Phase",
    "SystestError",
    "SystestResult",
    "render_text",
    "to_json",
]
