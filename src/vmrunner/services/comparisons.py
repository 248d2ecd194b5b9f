"""Comparing two attempts (kept runs): what ``vmrunner runs compare``, ``systest
--compare`` and the MCP tool ``compare_runs`` call. The comparison itself is pure
(:mod:`vmrunner.results.compare`); this module reads and re-keeps documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vmrunner.errors import UserInputError
from vmrunner.results.compare import compare
from vmrunner.services.core import Services


def document(services: Services, run_id: str, argument: str) -> dict[str, Any]:
    """The result document of kept run ``run_id``; raises ``UserInputError`` naming
    ``argument`` when there is no such run or it has no result yet."""
    try:
        rec = services.get(run_id)
    except UserInputError as exc:
        raise UserInputError(f"{argument}: {exc}") from exc
    if rec.document is None:
        raise UserInputError(f"{argument}: run {run_id} has no result yet (it is {rec.status})")
    return dict(rec.document)


def compare_runs(services: Services, before: str, after: str) -> dict[str, Any]:
    """What changed from run ``before`` to run ``after`` (see ``results.compare``)."""
    return compare(document(services, before, "before"), document(services, after, "after"))


def attach_comparison(
    services: Services, doc: dict[str, Any], before: dict[str, Any]
) -> dict[str, Any]:
    """``doc`` (a kept, final document) with ``comparison`` against ``before``, kept again
    (in the store and the run's ``result.json``)."""
    out = {**doc, "comparison": compare(before, doc)}
    services.runs.finish(out["id"], out["status"], out)
    run_dir = services.get(out["id"]).run_dir
    if run_dir:
        (Path(run_dir) / "result.json").write_text(json.dumps(out, indent=2))
    return out
