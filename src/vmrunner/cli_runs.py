"""``vmrunner runs ...``: every kept run (exec, workflow, systest), from any process."""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from vmrunner.cli_base import _services as make_services
from vmrunner.cli_base import make_console
from vmrunner.errors import VmrunnerError

if TYPE_CHECKING:
    from vmrunner.services.core import RunRecord, Services

runs_app = typer.Typer(help="List, show, follow and cancel kept runs.", no_args_is_help=True)
out = make_console()  # text as it is: no markup, no :emoji: codes, no wrapping
err = make_console(stderr=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]
FOLLOW_POLL_S = 0.3


def _services() -> Services:
    return make_services(reap_vms=False)


def _fail(exc: VmrunnerError) -> typer.Exit:
    err.print(f"vmrunner: error: {exc}", markup=False)
    return typer.Exit(125)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _summary(rec: RunRecord) -> dict[str, object]:
    return {
        "id": rec.id, "kind": rec.kind, "status": rec.status, "title": rec.title,
        "created_at": rec.created_at, "started_at": rec.started_at, "finished_at": rec.finished_at,
        "host": rec.host, "repo": rec.repo, "branch": rec.branch, "sha": rec.sha,
    }  # fmt: skip


@runs_app.command("list")
def list_runs(
    kind: Annotated[str | None, typer.Option(help="exec, workflow or systest.")] = None,
    status: Annotated[str | None, typer.Option(help="queued, running, success, failure, ...")] = None,
    repo: Annotated[str | None, typer.Option(help="Only runs of this repository.")] = None,
    branch: Annotated[str | None, typer.Option(help="Only runs of this branch.")] = None,
    host: Annotated[str | None, typer.Option(help="Only runs of this host.")] = None,
    limit: Annotated[int, typer.Option(help="At most N runs (newest first).")] = 20,
    as_json: JsonFlag = False,
) -> None:  # fmt: skip
    """The newest runs, whatever started them (newest first)."""
    from vmrunner.services.requests import run_filter

    try:
        flt = run_filter(kind=kind, status=status, repo=repo, branch=branch, host=host, limit=limit)
        with _services() as services:
            found = services.list_runs(flt)
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(json.dumps([_summary(r) for r in found], indent=2))
        return
    table = Table("id", "kind", "status", "started", "took", "host", "what")
    for r in found:
        took = f"{(r.finished_at or time.time()) - r.started_at:.1f}s" if r.started_at else "-"
        table.add_row(r.id, r.kind, r.status, _when(r.started_at or r.created_at), took, r.host,
                      r.title[:60])  # fmt: skip
    out.print(table)


@runs_app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="The run id.")], as_json: JsonFlag = False
) -> None:
    """A run's result document (as JSON, or rendered for people)."""
    from vmrunner.results import render_text

    try:
        with _services() as services:
            rec = services.get(run_id)
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    if rec.document is None:
        if as_json:
            print(json.dumps(_summary(rec), indent=2))
        else:
            out.print(
                f"run {rec.id} ({rec.kind}): {rec.status} on {rec.host}: {rec.title}", markup=False
            )
        return
    if as_json:
        print(json.dumps(rec.document, indent=2))
    else:
        out.print(render_text(rec.document), markup=False)


@runs_app.command("logs")
def logs(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    job: Annotated[str | None, typer.Option(help="The logs of the jobs whose name contains JOB.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")] = False,
) -> None:  # fmt: skip
    """A run's log: its live output, or with ``--job`` a job's full log."""
    try:
        with _services() as services:
            files = services.log_files(run_id, job)
            if follow and job is None and files:
                import asyncio

                asyncio.run(_follow(services, run_id, files[0][1]))
                return
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    for name, path in files:
        if len(files) > 1:
            print(f"==> {name} <==", flush=True)
        _copy(path, 0)


def _copy(path: Path, offset: int) -> int:
    """Write ``path`` from byte ``offset`` to stdout; the new offset."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except FileNotFoundError:
        return offset
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return offset + len(data)


async def _follow(services: Services, run_id: str, path: Path) -> None:
    """Print ``path`` as it grows until the run has a final status (then the rest)."""
    import asyncio

    offset = 0
    while True:
        offset = _copy(path, offset)
        rec = await asyncio.to_thread(services.get, run_id)
        if not rec.active:
            _copy(path, offset)
            return
        await asyncio.sleep(FOLLOW_POLL_S)


@runs_app.command("cancel")
def cancel(
    run_id: Annotated[str, typer.Argument(help="The run id.")],
    wait: Annotated[float, typer.Option(help="Wait up to SECONDS for it to end (0: do not wait).")] = 60.0,
) -> None:  # fmt: skip
    """Cancel a queued or running run, wherever it runs (its process stops it within a few
    seconds and keeps it as ``cancelled``). Exit 0 once it ended cancelled."""
    try:
        with _services() as services:
            rec = services.cancel(run_id)
            if rec.active and wait > 0:
                import asyncio

                rec = asyncio.run(services.wait(run_id, timeout=wait))
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    if rec.active:
        err.print(
            f"run {rec.id}: cancel requested; still {rec.status} after {wait:.0f} s", markup=False
        )
        raise typer.Exit(1)
    out.print(f"run {rec.id}: {rec.status}", markup=False)
    raise typer.Exit(0 if rec.status == "cancelled" else 1)


@runs_app.command("compare")
def compare(
    before: Annotated[str, typer.Argument(help="The earlier attempt's run id.")],
    after: Annotated[str, typer.Argument(help="The later attempt's run id.")],
    as_json: JsonFlag = False,
) -> None:
    """What changed between two attempts: phases, steps and checks that changed status,
    error kinds that appeared or went away, units that changed state, durations."""
    from vmrunner.results.compare import render_text
    from vmrunner.services.comparisons import compare_runs

    try:
        with _services() as services:
            cmp = compare_runs(services, before, after)
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(json.dumps(cmp, indent=2))
    else:
        out.print(render_text(cmp), end="", markup=False)
