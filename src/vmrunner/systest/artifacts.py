"""The files a system test leaves: ``--json``, ``--junit`` and ``--keep-artifacts DIR``.

DIR holds what an agent needs to debug the run, each recorded by name in
``result.artifacts`` (name -> path)::

    console.log         console     the guest serial console (once a VM booted)
    build.log           build_log   the image build's log (when a build ran, passed or failed)
    recipe.<ext>        recipe      the recipe file (when the config is a file)
    phases/<name>.log   phase_<name> each phase that ran: its log tail, then its errors
    junit.xml           junit       as ``--junit`` writes it
    result.json         result      as ``--json`` writes it; written last, it lists all of these

The runner writes the console and build logs as they appear (the VM and the
build directory are gone afterwards) and the rest once the result is final.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from vmrunner.systest.junit import to_junit
from vmrunner.systest.result import SystestResult, to_json

CONSOLE = "console.log"
BUILD_LOG = "build.log"


def write_reports(doc: dict[str, Any], json_path: Path | None, junit_path: Path | None) -> None:
    """Write the result document ``doc`` as JSON and/or JUnit XML (the one writer of both)."""
    if json_path is not None:
        json_path.write_text(to_json(doc))
    if junit_path is not None:
        junit_path.write_text(to_junit(doc))


def phase_log(result: SystestResult, name: str) -> str:
    """Phase ``name``'s log tail followed by its errors (kind: message), for people."""
    tail = result.phase(name).log_tail.rstrip("\n")
    errors = [f"{e.kind}: {e.message}" for e in result.errors if e.phase == name]
    parts = [tail] if tail else []
    if errors:
        parts.append("errors:\n" + "\n".join(errors))
    return "\n\n".join(parts) + "\n" if parts else ""


def keep_final(result: SystestResult, dest: Path, config: str) -> None:
    """Copy the recipe file and write the phase logs, ``junit.xml`` and ``result.json``
    (last) into ``dest``, recording each in ``result.artifacts``. Raises ``OSError``."""
    dest.mkdir(parents=True, exist_ok=True)
    arts = result.artifacts
    source = Path(config)
    if source.is_file():
        copy = dest / f"recipe{source.suffix or '.txt'}"
        shutil.copyfile(source, copy)
        arts["recipe"] = str(copy)
    for phase in result.phases:
        if phase.started_at is None:
            continue
        path = dest / "phases" / f"{phase.name}.log"
        path.parent.mkdir(exist_ok=True)
        path.write_text(phase_log(result, phase.name))
        arts[f"phase_{phase.name}"] = str(path)
    arts["junit"] = str(dest / "junit.xml")
    arts["result"] = str(dest / "result.json")
    write_reports(result.to_dict(), dest / "result.json", dest / "junit.xml")
