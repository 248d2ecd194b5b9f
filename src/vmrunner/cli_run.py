"""``vmrunner run [EVENT]``: act's flags and habits over the workflow service.

``-l``, ``-g`` and ``-n`` plan without a VM (and without the state directory); otherwise
the run is kept, its events shown live (:mod:`vmrunner.cli_live`), its summary printed.
Exit statuses: 0 when every job that ran succeeded (or nothing was triggered), 1 when
one failed, 125 for bad flags, an invalid workflow or a harness failure, 130 after
Ctrl-C.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vmrunner.cli_base import (
    HARNESS_EXIT,
    Accel,
    _fail,
    _services,
    _settings,
    learning_hint,
    out_console,
    run_async,
)
from vmrunner.errors import VmrunnerError

if TYPE_CHECKING:
    from vmrunner.services.runrequest import RunRequest


def run_command(
    event: Annotated[str | None, typer.Argument(help="The event (default push).", show_default=False)] = None,
    workflows: Annotated[list[Path] | None, typer.Option("--workflows", "-W", "--workflow", help="Workflow file or directory (default .github/workflows), repeatable.")] = None,
    job: Annotated[list[str] | None, typer.Option("--job", "-j", help="Run only JOB (and the jobs it needs), repeatable.")] = None,
    eventpath: Annotated[Path | None, typer.Option("--eventpath", "-e", help="The event payload (a JSON file).")] = None,
    list_: Annotated[bool, typer.Option("--list", "-l", help="List the jobs the event would run (every job without EVENT): stage, matrix size, file.")] = False,
    graph: Annotated[bool, typer.Option("--graph", "-g", help="Show the needs graph.")] = False,
    dryrun: Annotated[bool, typer.Option("--dryrun", "-n", help="Show the plan with expressions evaluated; start no VM.")] = False,
    directory: Annotated[Path, typer.Option("--directory", "-C", help="The repository; relative paths of the other flags are relative to it.")] = Path(),
    actor: Annotated[str | None, typer.Option("--actor", "-a", help="github.actor (default: git's user.name).")] = None,
    defaultbranch: Annotated[str | None, typer.Option("--defaultbranch", help="github.event.repository.default_branch.")] = None,
    platform: Annotated[list[str] | None, typer.Option("--platform", "-P", help="LABEL=IMAGE: run runs-on LABEL on IMAGE, repeatable.")] = None,
    strict_platforms: Annotated[bool, typer.Option("--strict-platforms", help="A runs-on label with no image fails its job (default: skipped).")] = False,
    env: Annotated[list[str] | None, typer.Option("--env", help="K=V (bare K: from the environment), over the workflow and job env.")] = None,
    env_file: Annotated[Path | None, typer.Option("--env-file", help="A dotenv file of env (default .env when present).")] = None,
    secret: Annotated[list[str] | None, typer.Option("--secret", "-s", help="K=V, or K to take $K, repeatable.")] = None,
    secret_file: Annotated[Path | None, typer.Option("--secret-file", help="A dotenv file of secrets (default .secrets when present).")] = None,
    var: Annotated[list[str] | None, typer.Option("--var", help="K=V, or K to take $K, repeatable.")] = None,
    var_file: Annotated[Path | None, typer.Option("--var-file", help="A dotenv file of vars (default .vars when present).")] = None,
    input_: Annotated[list[str] | None, typer.Option("--input", help="K=V: a workflow_dispatch input, repeatable.")] = None,
    input_file: Annotated[Path | None, typer.Option("--input-file", help="A dotenv file of inputs (default .input when present).")] = None,
    matrix: Annotated[list[str] | None, typer.Option("--matrix", help="K:V: only the matrix combinations with it, repeatable.")] = None,
    concurrent_jobs: Annotated[int | None, typer.Option("--concurrent-jobs", "--max-parallel", help="At most N jobs at once.")] = None,
    accel: Annotated[Accel | None, typer.Option(help="Acceleration (default: the accel setting).")] = None,
    actions_dir: Annotated[list[Path] | None, typer.Option("--actions-dir", help="Where owner/repo actions are found.")] = None,
    json_file: Annotated[str | None, typer.Option("--json", help="Write the result document (the plan with -l/-g/-n) to FILE.")] = None,
) -> None:  # fmt: skip
    """Run the workflows EVENT triggers (default: push of the current commit), each job in
    a fresh VM; exit 0 only if every job that ran succeeded."""
    from vmrunner.services.runrequest import RunFlags, run_request

    flags = RunFlags(
        event=event or "push", directory=directory, workflows=workflows or (), jobs=job or (),
        event_path=eventpath, env=env or (), env_file=env_file, secrets=secret or (),
        secret_file=secret_file, vars=var or (), var_file=var_file, inputs=input_ or (),
        input_file=input_file, matrix=matrix or (), platforms=platform or (),
        strict_platforms=strict_platforms, actor=actor, default_branch=defaultbranch,
        concurrent_jobs=concurrent_jobs, accel=accel.value if accel else "",
        actions_dirs=actions_dir or (),
    )  # fmt: skip
    try:
        req = run_request(flags, os.environ)
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    if list_ or graph or dryrun:
        mode = "list" if list_ else "graph" if graph else "dryrun"
        _show_plan(req, mode, every_event=event is None and mode != "dryrun", json_file=json_file)
    _run(req, json_file)


def _show_plan(req: RunRequest, mode: str, *, every_event: bool, json_file: str | None) -> None:
    """``-l``, ``-g`` or ``-n``: print the plan verbatim, exit 0 (125 with invalid workflows)."""
    from vmrunner.services.planning import plan_request
    from vmrunner.services.planview import render_dryrun, render_graph, render_list

    try:
        plan = plan_request(req, _settings().label_images, every_event=every_event,
                            dry_run=mode == "dryrun")  # fmt: skip
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    render = {"list": render_list, "graph": render_graph, "dryrun": render_dryrun}[mode]
    _print_plain(render(plan))
    if json_file:
        Path(json_file).write_text(json.dumps(plan.to_dict(), indent=2))
    raise typer.Exit(HARNESS_EXIT if plan.errors else 0)


def _print_plain(lines: list[str]) -> None:
    import sys

    sys.stdout.buffer.write("".join(f"{line}\n" for line in lines).encode("utf-8", "replace"))
    sys.stdout.flush()


def _run(req: RunRequest, json_file: str | None) -> None:
    from vmrunner.cli_live import run_events
    from vmrunner.results import render_text
    from vmrunner.services.workflows import run_workflow

    with _services() as services:
        try:
            with run_events(out_console) as sink:
                outcome = run_async(run_workflow(services, req, sink))
        except VmrunnerError as exc:
            raise _fail(exc) from exc
    if json_file:
        Path(json_file).write_text(json.dumps(outcome.document, indent=2))
    if outcome.nothing_triggered:
        event = outcome.document.get("trigger", {}).get("event", "")
        reasons = "; ".join(f"{f}: {r}" for f, r in outcome.not_triggered) or "no workflow files"
        out_console.print(f"nothing to run: no workflow is triggered by '{event}' ({reasons})")
        raise typer.Exit(0)
    out_console.print(render_text(outcome.document))
    hint = learning_hint(outcome.document.get("learning"))
    if hint:
        out_console.print(f"learning: {hint}", style="yellow")
    raise typer.Exit(outcome.exit_status)
