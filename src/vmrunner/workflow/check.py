"""Check workflow files the way GitHub does: ``check_text`` and ``check_file``.

A check runs, in order: the YAML loader (YAML 1.2, positions, duplicate keys), the JSON
schema (:mod:`.schema`), GitHub's semantic rules (:mod:`.validate`), and the rules
about calling reusable workflows (below): the called workflow must exist and be
callable, required inputs and secrets must be passed and unknown ones must not, and the
permissions it asks for must not exceed what the caller grants. Called workflows are
checked too, and their own problems are reported against their own file names.

Every problem becomes a :class:`Diagnostic`; nothing is raised for bad input. Only
``check_file`` and the file resolver it makes read files; nothing here writes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal

from vmrunner.errors import UserInputError
from vmrunner.workflow.loader import (
    DEFAULT_LIMITS,
    Limits,
    MappingNode,
    Pos,
    ScalarNode,
    YamlError,
    load_text,
)
from vmrunner.workflow.model import (
    LEVELS,
    SCOPES,
    Job,
    Permissions,
    Workflow,
    build_workflow,
)
from vmrunner.workflow.schema import validate_schema
from vmrunner.workflow.validate import validate_workflow


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"  # something was not checked, and why


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem in one file. ``line`` and ``col`` are 1-based; ``code`` names the rule
    family (``yaml``, ``schema``, ``needs``, ``expression``, ``reusable-workflow``...)."""

    file: str
    line: int
    col: int
    message: str
    severity: Severity = Severity.ERROR
    code: str = ""

    def format(self) -> str:
        """``FILE:LINE:COL: message``, the form editors and people read."""
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


class WorkflowError(UserInputError):
    """A workflow GitHub would not run; ``diagnostics`` says why (errors first)."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(d.format() for d in diagnostics))


PermissionsPolicy = Literal["write", "limited-read"]


@dataclass(frozen=True)
class CheckOptions:
    """Knobs of a check.

    ``permissions_policy`` is the repository's default ``GITHUB_TOKEN`` setting, which a
    file cannot show: ``write`` (permissive, the default here so that nothing is flagged
    that might be fine) or ``limited-read`` (contents and packages read, all else none).
    """

    permissions_policy: PermissionsPolicy = "write"
    max_file_size: int = 1024 * 1024
    max_call_depth: int = 9  # levels below the caller: GitHub allows ten levels in all
    limits: Limits = field(default=DEFAULT_LIMITS)


@dataclass(frozen=True)
class WorkflowSource:
    """What a resolver found for a ``uses:`` reference. ``text`` is None when the
    reference points where there is no file (which GitHub reports as an error)."""

    name: str
    text: str | None


# Returns None for references it cannot look into (a remote repository, say): those are
# not checked. Must not raise.
Resolver = Callable[[str], WorkflowSource | None]


def _diag(file: str, pos: Pos, message: str, code: str) -> Diagnostic:
    return Diagnostic(file, pos.line, pos.col, message, Severity.ERROR, code)


def _parse(
    text: str, filename: str, options: CheckOptions
) -> tuple[Workflow | None, list[Diagnostic]]:
    """Load, schema-check and semantically check one text; the model is None only when
    the text could not be loaded or its top level is not a mapping."""
    if len(text) > options.max_file_size:
        message = f"The maximum file size of {options.max_file_size} characters has been exceeded"
        return None, [_diag(filename, Pos(1, 1), message, "size")]
    try:
        root = load_text(text, filename, options.limits)
    except YamlError as exc:
        return None, [_diag(filename, p.pos, p.message, "yaml") for p in exc.problems]
    found = [_diag(filename, p.pos, p.message, "schema") for p in validate_schema(root)]
    workflow = build_workflow(root)
    if workflow is not None:
        found += [_diag(filename, p.pos, p.message, p.code) for p in validate_workflow(workflow)]
    return workflow, found


# ---- calling reusable workflows ----------------------------------------------------

_POLICIES: dict[str, Permissions] = {
    "write": Permissions(
        Pos(1, 1), None, tuple((s, "none" if s == "id-token" else "write") for s in SCOPES)
    ),
    "limited-read": Permissions(Pos(1, 1), None, (("contents", "read"), ("packages", "read"))),
}


def _excess(requested: Permissions, allowed: Permissions) -> tuple[str, str] | None:
    """The scopes ``requested`` asks beyond ``allowed``, formatted both ways, or None."""
    over = [s for s in SCOPES if LEVELS.index(requested.level(s)) > LEVELS.index(allowed.level(s))]
    if not over:
        return None
    asked = ", ".join(f"{s}: {requested.level(s)}" for s in over)
    granted = ", ".join(f"{s}: {allowed.level(s)}" for s in over)
    return asked, granted


@dataclass
class _Caller:
    """One checking session over a workflow and everything it calls."""

    options: CheckOptions
    resolver: Resolver
    diagnostics: list[Diagnostic] = field(default_factory=list)
    parsed: dict[str, tuple[Workflow | None, list[Diagnostic]]] = field(default_factory=dict)

    def calls(
        self, workflow: Workflow, file: str, allowed: Permissions, stack: tuple[str, ...]
    ) -> None:
        """Check every reusable-workflow call of ``workflow`` (which lives in ``file``,
        was reached through ``stack`` and may grant at most ``allowed``)."""
        for job in workflow.jobs:
            if job.uses is None or "${{" in job.uses.text:
                continue
            grant = job.permissions or workflow.permissions or allowed
            self.call(job, job.uses, file, grant, stack)

    def call(
        self, job: Job, uses: ScalarNode, file: str, grant: Permissions, stack: tuple[str, ...]
    ) -> None:
        source = self.resolver(uses.text)
        if source is None:
            return
        if (problem := self.unreachable(source, uses.text, stack)) is not None:
            code = "reusable-workflow-missing" if source.text is None else "reusable-workflow"
            self.diagnostics.append(_diag(file, uses.pos, problem, code))
            return
        callee = self.parse(source)
        if callee is not None:
            self.diagnostics += _interface(job, uses, file, callee)
            self.diagnostics += _permissions(job, file, uses.text, callee, grant)
            self.calls(callee, source.name, grant, (*stack, source.name))

    def unreachable(self, source: WorkflowSource, ref: str, stack: tuple[str, ...]) -> str | None:
        if source.text is None:
            return f"Called workflow '{ref}' was not found"
        if source.name in stack:
            return f"The workflow '{ref}' calls itself (through {' -> '.join(stack)})"
        if len(stack) > self.options.max_call_depth:
            return (
                f"Calling '{ref}' nests reusable workflows more than "
                f"{self.options.max_call_depth} levels deep"
            )
        return None

    def parse(self, source: WorkflowSource) -> Workflow | None:
        """The called workflow's model; its own problems are reported once, in its file."""
        if source.name not in self.parsed:
            assert source.text is not None
            self.parsed[source.name] = _parse(source.text, source.name, self.options)
            self.diagnostics += self.parsed[source.name][1]
        return self.parsed[source.name][0]


def _interface(job: Job, uses: ScalarNode, file: str, callee: Workflow) -> Iterator[Diagnostic]:
    """Inputs and secrets passed by ``job`` against those ``callee`` declares."""
    if callee.on.get("workflow_call") is None:
        message = f"The workflow '{uses.text}' cannot be called: it has no 'workflow_call' trigger"
        yield _diag(file, uses.pos, message, "reusable-workflow")
        return
    inputs = {i.name: i for i in callee.on.inputs("workflow_call")}
    given = job.with_.pairs if isinstance(job.with_, MappingNode) else ()
    for key, value in given:
        if key.text not in inputs:
            message = f"Invalid input, {key.text} is not defined in the referenced workflow."
            yield _diag(file, value.pos, message, "reusable-workflow")
    given_names = {key.text for key, _ in given}
    for name, declared in inputs.items():
        if declared.required and name not in given_names:
            message = f"Input {name} is required, but not provided while calling."
            yield _diag(file, uses.pos, message, "reusable-workflow")
    yield from _secrets(job, uses, file, callee)


def _secrets(job: Job, uses: ScalarNode, file: str, callee: Workflow) -> Iterator[Diagnostic]:
    if isinstance(job.secrets, ScalarNode) and (
        job.secrets.text == "inherit" or "${{" in job.secrets.text
    ):
        return  # all of them, or whatever the expression gives
    # Anything else that is not a mapping is the schema's to report, and passes none.
    secrets = {s.name: s for s in callee.on.call_secrets()}
    passed = job.secrets.pairs if isinstance(job.secrets, MappingNode) else ()
    for key, value in passed:
        if key.text not in secrets:
            message = f"Invalid secret, {key.text} is not defined in the referenced workflow."
            yield _diag(file, value.pos, message, "reusable-workflow")
    passed_names = {key.text for key, _ in passed}
    for name, declared in secrets.items():
        if declared.required and name not in passed_names:
            message = f"Secret {name} is required, but not provided while calling."
            yield _diag(file, uses.pos, message, "reusable-workflow")


def _permissions(
    job: Job, file: str, ref: str, callee: Workflow, grant: Permissions
) -> Iterator[Diagnostic]:
    """Permissions the callee (workflow level, then each job) asks beyond ``grant``."""
    prefix = f"Error calling workflow '{ref}'."
    if callee.permissions and (excess := _excess(callee.permissions, grant)):
        message = (
            f"{prefix} The workflow '{ref}' is requesting '{excess[0]}', "
            f"but is only allowed '{excess[1]}'."
        )
        yield _diag(file, job.pos, message, "permissions")
    for nested in callee.jobs:
        if nested.permissions and (excess := _excess(nested.permissions, grant)):
            message = (
                f"{prefix} The nested job '{nested.display_name}' is requesting "
                f"'{excess[0]}', but is only allowed '{excess[1]}'."
            )
            yield _diag(file, job.pos, message, "permissions")


# ---- entry points ------------------------------------------------------------------


def _no_resolver(_ref: str) -> WorkflowSource | None:
    return None


def check_text(
    text: str,
    filename: str = "<string>",
    *,
    options: CheckOptions | None = None,
    resolver: Resolver | None = None,
    extra: Callable[[Workflow, str], list[Diagnostic]] | None = None,
) -> list[Diagnostic]:
    """Every problem GitHub would report for ``text``, sorted by file then position.

    Reusable workflows are looked up with ``resolver`` (by default none are, so their
    inputs, secrets and permissions go unchecked). ``extra`` adds what it finds in the
    workflow's model (the actions its steps use, say). Never raises for bad input.
    """
    options = options or CheckOptions()
    workflow, found = _parse(text, filename, options)
    if workflow is not None and extra is not None:
        found += extra(workflow, filename)
    caller = _Caller(options, resolver or _no_resolver, found, {filename: (workflow, [])})
    if workflow is not None:
        top = workflow.permissions or _POLICIES[options.permissions_policy]
        caller.calls(workflow, filename, top, (filename,))
    unique = dict.fromkeys(caller.diagnostics)
    return sorted(unique, key=lambda d: (d.file != filename, d.file, d.line, d.col))


def file_resolver(path: Path) -> Resolver:
    """A resolver for workflows of the repository that holds ``path``.

    ``./X`` and ``$/X`` name ``X`` in the repository root (the directory above
    ``.github/workflows``); anything else (``owner/repo/...@ref``) is not looked up.
    When ``path`` is not in a ``.github/workflows`` directory, nothing is looked up.
    """
    parent = path.parent
    root = parent.parent.parent if parent.parts[-2:] == (".github", "workflows") else None

    def resolve(ref: str) -> WorkflowSource | None:
        if root is None or not ref.startswith(("./", "$/")):
            return None
        target = root / ref[2:].split("@", 1)[0]
        try:
            return WorkflowSource(str(target), target.read_text("utf-8"))
        except (OSError, UnicodeDecodeError):
            return WorkflowSource(str(target), None)

    return resolve


def check_file(path: Path, *, options: CheckOptions | None = None) -> list[Diagnostic]:
    """:func:`check_text` on a file, resolving local reusable workflows beside it.

    An unreadable file is one diagnostic, not an exception.
    """
    name = str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return [_diag(name, Pos(1, 1), f"Cannot read the file: {exc}", "io")]
    return check_text(text, name, options=options, resolver=file_resolver(path))


def load_workflow(
    text: str,
    filename: str = "<string>",
    *,
    options: CheckOptions | None = None,
    resolver: Resolver | None = None,
) -> Workflow:
    """The model of a workflow GitHub would accept; raises :class:`WorkflowError` with
    every error :func:`check_text` finds otherwise."""
    diagnostics = check_text(text, filename, options=options, resolver=resolver)
    errors = [d for d in diagnostics if d.severity is Severity.ERROR]
    if errors:
        raise WorkflowError(errors)
    workflow = build_workflow(load_text(text, filename, (options or CheckOptions()).limits))
    if workflow is None:  # unreachable: a non-mapping top level is a schema error
        raise WorkflowError([_diag(filename, Pos(1, 1), "Not a workflow", "schema")])
    return workflow
