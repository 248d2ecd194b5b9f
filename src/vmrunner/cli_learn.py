"""``vmrunner learn ...``: the knowledge graph of commands and failures, from the CLI."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from vmrunner.cli_base import make_console
from vmrunner.config import load_settings
from vmrunner.errors import VmrunnerError

learn_app = typer.Typer(
    help="Query what vmrunner learned from every command it ran.", no_args_is_help=True
)
out = make_console()  # text as it is: no markup, no :emoji: codes, no wrapping
err = make_console(stderr=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _emit(result: Any, as_json: bool) -> bool:
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    return as_json


def _run(fn: Any) -> Any:
    from vmrunner.services.learning import open_learning  # loads the store only when used

    try:
        with open_learning(load_settings()) as svc:
            return fn(svc)
    except VmrunnerError as exc:
        err.print(f"vmrunner: error: {exc}")
        raise typer.Exit(125) from exc


@learn_app.command()
def stats(
    as_json: JsonFlag = False, top: Annotated[int, typer.Option(help="Rows per table.")] = 10
) -> None:
    """Totals, success rates per repository and job, top failures, flaky and slow commands."""
    s = _run(lambda svc: svc.stats(top=top))
    if _emit(s, as_json):
        return
    d = s.to_dict()
    out.print(Text.assemble(("observations", "bold"), f": {json.dumps(d['totals'])}"))
    for key, title in (("failing_commands", "top failing commands"), ("signatures", "top failure signatures"),
                       ("flaky_commands", "flaky commands"), ("slowest_commands", "slowest commands")):  # fmt: skip
        rows = d.get(key) or []
        if not rows:
            continue
        table = Table(*[str(k) for k in rows[0]], title=title)
        for row in rows:
            table.add_row(*[str(v)[:80] for v in row.values()])
        out.print(table)


@learn_app.command()
def predict(
    command: Annotated[str, typer.Argument(help="The command, as a shell string.")],
    repo: Annotated[str | None, typer.Option(help="Repository context.")] = None,
    after: Annotated[str | None, typer.Option(help="The command run just before.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The probability that COMMAND succeeds, with its evidence and the context level used."""
    p = _run(lambda svc: svc.predict(command, repo=repo, after=after))
    if _emit(p, as_json):
        return
    low, high = p.interval
    out.print(Text.assemble(f"{p.probability:.2f} chance of success for ", (p.normalised, "bold"),
              f" ({p.observations} observations at level '{p.level}', 95% interval {low:.2f}-{high:.2f})"))  # fmt: skip


@learn_app.command()
def related(
    command: Annotated[str, typer.Argument(help="The command, as a shell string.")],
    repo: Annotated[str | None, typer.Option(help="Repository context.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Commands that usually come before and after COMMAND, and what fails with it."""
    r = _run(lambda svc: svc.related(command, repo=repo))
    if _emit(r, as_json):
        return
    d = r.to_dict()
    out.print(Text.assemble((d["normalised"], "bold"), f": {d['observations']} observations"))
    for key in ("before", "after", "failed_with", "co_failures"):
        for row in d.get(key) or []:
            out.print(f"  {key}: {json.dumps(row, default=str)[:160]}")


@learn_app.command()
def lessons(
    min_occurrences: Annotated[
        int | None, typer.Option("--min", help="Occurrences that make a lesson.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Failure signatures seen repeatedly, with where, when and a candidate fix."""
    ls = _run(lambda svc: svc.lessons(min_occurrences=min_occurrences))
    if _emit(ls, as_json):
        return
    d = ls.to_dict()
    if not d["lessons"]:
        out.print(f"no failure seen {d['min_occurrences']} times or more yet")
    for lesson in d["lessons"]:
        out.print(json.dumps(lesson, indent=2, default=str))


@learn_app.command()
def explain(
    run_id: Annotated[
        str, typer.Argument(help="A run id from 'vmrunner run' or 'vmrunner exec --json'.")
    ],
    as_json: JsonFlag = False,
) -> None:
    """For each failed step of a stored run: its signature, history, lessons and flakiness."""
    e = _run(lambda svc: svc.explain(run_id))
    if _emit(e, as_json):
        return
    d = e.to_dict()
    if not d.get("found"):
        out.print(f"no run {run_id!r} in the learning store")
        raise typer.Exit(1)
    for step in d.get("failed_steps") or []:
        out.print(json.dumps(step, indent=2, default=str))
