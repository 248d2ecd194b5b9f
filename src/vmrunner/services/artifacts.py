"""A kept run's artifacts (what its jobs uploaded with upload-artifact): listed and
downloaded for ``vmrunner runs artifacts`` and other edges."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vmrunner.errors import UserInputError
from vmrunner.toolkit.artifacts import Artifact, artifacts_dir, read_artifacts


def _kept(services: Any, run_id: str) -> tuple[Path, list[Artifact]]:
    rec = services.get(run_id)  # RunNotFoundError for an unknown id
    if not rec.run_dir:
        return Path(), []
    run_dir = Path(rec.run_dir)
    return run_dir, read_artifacts(run_dir)


def run_artifacts(services: Any, run_id: str) -> list[dict[str, Any]]:
    """The artifacts of run ``run_id``: id, name, size (bytes of the zip) and digest."""
    return [a.summary() for a in _kept(services, run_id)[1]]


def download_artifacts(
    services: Any, run_id: str, dest: Path, names: Sequence[str] = ()
) -> list[Path]:
    """Extract the artifacts of run ``run_id`` (only ``names`` when given) into
    ``dest/<name>/``, as download-artifact does for several; the directories written.
    Raises ``UserInputError`` for a name the run does not have or an unsafe member."""
    run_dir, found = _kept(services, run_id)
    unknown = sorted(set(names) - {a.name for a in found})
    if unknown:
        raise UserInputError(f"run {run_id} has no artifact named {', '.join(unknown)}")
    written = []
    for a in found:
        if names and a.name not in names:
            continue
        target = dest / a.name
        _extract(artifacts_dir(run_dir) / f"{a.id}.zip", target)
        written.append(target)
    return written


def _extract(archive: Path, target: Path) -> None:
    """Unzip ``archive`` into ``target``, refusing members that would land outside."""
    root = target.resolve()
    if not zipfile.is_zipfile(archive):
        raise UserInputError(f"{archive} is not a zip archive")
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            where = (root / member.filename).resolve()
            if not where.is_relative_to(root):
                raise UserInputError(f"{archive.name}: member {member.filename!r} leads outside")
        root.mkdir(parents=True, exist_ok=True)
        zf.extractall(root)
