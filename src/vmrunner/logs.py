"""Logging for people and machines: standard ``logging`` records rendered by structlog,
with the run, job, step and machine bound as fields (``structlog.contextvars``).

``configure(1)`` shows info, ``configure(2)`` debug, on stderr. Without it nothing below
warning is shown (Python's default).
"""

from __future__ import annotations

import logging
import sys


def configure(verbosity: int) -> None:
    """Send log records to stderr as ``key=value`` lines with the bound context fields."""
    import structlog

    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"])],
        foreign_pre_chain=[*processors, structlog.stdlib.ExtraAdder()],
    )  # fmt: skip
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO)


def bind(**fields: str) -> None:
    """Bind ``fields`` (run, job, step, machine) to every log record of this context."""
    import structlog

    structlog.contextvars.bind_contextvars(**fields)
