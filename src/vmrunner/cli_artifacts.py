"""``vmrunner runs artifacts ID``: what a workflow run's jobs uploaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vmrunner.cli_base import _services as make_services
from vmrunner.cli_base import make_console
from vmrunner.errors import VmrunnerError

out = make_console()
err = make_console(stderr=True)


def artifacts_cmd(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    download: Annotated[Path | None, typer.Option("--download", help="Extract each artifact into DIR/NAME/.")] = None,
    name: Annotated[list[str] | None, typer.Option("--name", help="Only this artifact (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:  # fmt: skip
    """A run's artifacts (name, size, digest); with --download, their files."""
    from vmrunner.services.artifacts import download_artifacts, run_artifacts

    try:
        with make_services(reap_vms=False) as services:
            listed = run_artifacts(services, run_id)
            listed = [a for a in listed if not name or a["name"] in name]
            written = download_artifacts(services, run_id, download, name or ()) if download else []
    except VmrunnerError as exc:
        err.print(f"vmrunner: error: {exc}", markup=False)
        raise typer.Exit(125) from exc
    if as_json:
        print(json.dumps({"artifacts": listed, "downloaded": [str(p) for p in written]}, indent=2))
        return
    if not listed:
        out.print(f"run {run_id} has no artifacts", markup=False)
    for a in listed:
        out.print(f"{a['name']}\t{a['size']} bytes\t{a['digest']}", markup=False)
    for p in written:
        out.print(f"extracted into {p}", markup=False)
