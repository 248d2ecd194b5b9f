"""Checking the actions a workflow's steps use against their ``action.yml``: pure code.

The caller resolves each remote ``uses:`` (``owner/repo[/path]@ref``) into an
:class:`ActionResolution` (the service layer reads vmrunner's action cache, or fetches);
this module turns what it got into diagnostics, at the step's place in the file:

* a ``with:`` key the action does not declare: a warning with GitHub's run-time text
  ("Unexpected input(s) 'x', valid inputs are ['a', 'b']"), at the key;
* a required input without a default that the step does not give: an error at the step;
* a Docker action (``runs.using: docker``, or a ``docker://`` step): a warning that
  vmrunner will not run it;
* an action that cannot be resolved (unknown ref, no repository, no ``action.yml``, a
  ``runs.using`` vmrunner cannot run): an error at ``uses:`` naming it;
* an action that was not looked at (not in the cache, unreachable): a note, once per
  action and checking session (``seen``), never an error.

``actions/checkout`` (built into vmrunner), local actions (``./path``, ``$/path``) and ``uses:`` with
an expression are not looked at. Nothing here reads a file or raises for bad input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from vmrunner.workflow.check import Diagnostic, Severity
from vmrunner.workflow.loader import MappingNode, Pos
from vmrunner.workflow.model import Step, Workflow

CODE = "action"


@dataclass(frozen=True)
class ActionInfo:
    """What a check needs of an ``action.yml``: its ``runs.using`` and its inputs, each
    with whether it must be given (required, and no default)."""

    using: str
    inputs: tuple[tuple[str, bool], ...]


@dataclass(frozen=True)
class ActionResolution:
    """One of: ``info`` (the action was read), ``error`` (it cannot be used: why), or
    ``note`` (it was not looked at: why)."""

    info: ActionInfo | None = None
    error: str = ""
    note: str = ""


ActionResolver = Callable[[str], ActionResolution]


def is_checked(uses: str) -> bool:
    """Whether ``uses`` is resolved at all: a remote action, not checkout, not a local
    one (``./``, ``$/``), not ``docker://``, and no expression."""
    name = uses.split("@", 1)[0].lower()
    return not (
        "${{" in uses
        or uses.startswith(("./", "$/", "/", "docker://"))
        or name == "actions/checkout"
    )


def check_actions(
    workflow: Workflow, filename: str, resolve: ActionResolver, seen: set[str]
) -> list[Diagnostic]:
    """The problems of the actions ``workflow``'s steps use (see the module docstring);
    ``seen`` holds the notes already given (it is updated)."""
    found: list[Diagnostic] = []
    for job in workflow.jobs:
        for step in job.steps:
            if step.uses is not None:
                found += _check_step(step, filename, resolve, seen)
    return found


def _check_step(
    step: Step, filename: str, resolve: ActionResolver, seen: set[str]
) -> Iterator[Diagnostic]:
    assert step.uses is not None
    uses, pos = step.uses.text.strip(), step.uses.pos
    if uses.startswith("docker://"):
        yield _at(filename, pos, _docker(uses), Severity.WARNING)
        return
    if not is_checked(uses):
        return
    got = resolve(uses)
    if got.error:
        yield _at(filename, pos, got.error, Severity.ERROR)
    elif got.note and got.note not in seen:  # once per action (the note names it)
        seen.add(got.note)
        yield _at(filename, pos, f"not checked: {got.note}", Severity.NOTE)
    elif got.info is not None and got.info.using == "docker":
        yield _at(filename, pos, _docker(uses), Severity.WARNING)
    elif got.info is not None:
        yield from _inputs(step, filename, uses, got.info)


def _inputs(step: Step, filename: str, uses: str, info: ActionInfo) -> Iterator[Diagnostic]:
    """Unknown ``with:`` keys (warnings) and missing required inputs (errors)."""
    given = step.with_.pairs if isinstance(step.with_, MappingNode) else ()
    known = {name.lower() for name, _ in info.inputs}
    valid = ", ".join(repr(name) for name, _ in info.inputs)
    for key, _ in given:
        if key.text.lower() not in known:
            message = f"Unexpected input(s) '{key.text}', valid inputs are [{valid}] ({uses})"
            yield _at(filename, key.pos, message, Severity.WARNING)
    names = {key.text.lower() for key, _ in given}
    for name, required in info.inputs:
        if required and name.lower() not in names:
            message = f"The action '{uses}' needs its required input '{name}' (give it under with:)"
            yield _at(filename, step.pos, message, Severity.ERROR)


def _docker(uses: str) -> str:
    return (
        f"The step uses the Docker action '{uses}': vmrunner will not run it (container "
        "actions are not supported yet)"
    )


def _at(filename: str, pos: Pos, message: str, severity: Severity) -> Diagnostic:
    return Diagnostic(filename, pos.line, pos.col, message, severity, CODE)
