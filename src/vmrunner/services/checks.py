"""Checking workflow files, and the small parsers of ``K=V`` flags: the light part of
the workflow service (no VM, no store), so that ``vmrunner check`` starts fast and needs
no state directory."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from vmrunner.errors import ConfigError
from vmrunner.repopath import inside_repo, repo_resolver
from vmrunner.workflow.action_check import ActionResolver, check_actions
from vmrunner.workflow.check import Diagnostic, check_file, check_text
from vmrunner.workflow.model import Workflow

Pairs = tuple[tuple[str, str], ...]
Extra = Callable[[Workflow, str], list[Diagnostic]]


def recipe_schema() -> dict[str, object]:
    """The JSON Schema of a Debian system-test recipe (loaded only when asked for)."""
    from vmrunner.systest.recipe import recipe_schema as schema

    return schema()


def workflow_files(paths: Sequence[Path], root: Path) -> list[Path]:
    """The workflow files named by ``paths`` (files, or directories holding ``*.yml`` and
    ``*.yaml``); ``root/.github/workflows`` when none is given. A file under ``root`` whose
    real path leaves it (a symlink to a host file) is a ``ConfigError`` that shows nothing
    of that file; a file the user names outside ``root`` is theirs to name."""
    found: list[Path] = []
    for path in paths or [root / ".github" / "workflows"]:
        if path.is_dir():
            found += sorted(
                p for p in path.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file()
            )
        elif path.exists():
            found.append(path)
        else:
            raise ConfigError(f"{path} does not exist")
    return [_in_repo(f, root) for f in found]


def _in_repo(file: Path, root: Path) -> Path:
    # lexically, on purpose: whether the path names something in the repository
    lexical = Path(os.path.abspath(file))  # noqa: PTH100
    if lexical.is_relative_to(Path(os.path.abspath(root))):  # noqa: PTH100
        inside_repo(file, root, "the workflow file")
    return file


def check_paths(
    paths: Sequence[Path], cwd: Path, *, fetch_actions: bool = False,
    lookup: ActionResolver | None = None,
) -> list[Diagnostic]:  # fmt: skip
    """Every problem in the workflow files under ``paths`` (default
    ``.github/workflows`` of ``cwd``), sorted by file and position, and those of the remote
    actions their steps use (``lookup``, by default an
    :class:`~vmrunner.services.action_lookup.ActionLookup` over vmrunner's action cache,
    fetching missing actions when ``fetch_actions``): a note for each action not looked at."""
    if lookup is None:
        from vmrunner.services.action_lookup import ActionLookup

        lookup = ActionLookup(fetch=fetch_actions)
    seen: set[str] = set()

    def steps(workflow: Workflow, filename: str) -> list[Diagnostic]:
        return check_actions(workflow, filename, lookup, seen)

    out: list[Diagnostic] = []
    for file in workflow_files(paths, cwd):
        out += _check_in_repo(file, cwd, steps)
    return out


def _check_in_repo(file: Path, root: Path, extra: Extra) -> list[Diagnostic]:
    """``check_file``, except that called workflows outside ``root`` are never read."""
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return check_file(file)  # its one "cannot read" diagnostic
    return check_text(text, str(file), resolver=repo_resolver(file, root), extra=extra)


def parse_pairs(items: Sequence[str], flag: str, sep: str = "=") -> Pairs:
    """``K=V`` strings as pairs; raises ``ConfigError`` naming ``flag``."""
    pairs = []
    for item in items:
        key, found, value = item.partition(sep)
        if not found or not key:
            raise ConfigError(f"{flag} expects K{sep}V, got {item!r}")
        pairs.append((key, value))
    return tuple(pairs)


KNOWN_EVENTS = (
    "branch_protection_rule", "check_run", "check_suite", "create", "delete", "deployment",
    "deployment_status", "discussion", "discussion_comment", "fork", "gollum", "image_version",
    "issue_comment", "issues", "label", "merge_group", "milestone", "page_build", "project",
    "project_card", "project_column", "public", "pull_request", "pull_request_review",
    "pull_request_review_comment", "pull_request_target", "push", "registry_package",
    "release", "repository_dispatch", "schedule", "status", "watch", "workflow_call",
    "workflow_dispatch", "workflow_run",
)  # fmt: skip
"""The events a workflow's ``on:`` can name (GitHub's workflow schema)."""


def check_event(name: str) -> None:
    """Raise ``ConfigError`` naming the known events when ``name`` is not one."""
    if name in KNOWN_EVENTS:
        return
    import difflib

    close = difflib.get_close_matches(name, KNOWN_EVENTS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"unknown event '{name}'{hint}: known events are {', '.join(KNOWN_EVENTS)}")


def flag_pairs(
    items: Sequence[str], flag: str, *, sep: str = "=", bare: str = "error",
    environ: Mapping[str, str] | None = None,
) -> Pairs:  # fmt: skip
    """``K=V`` flag values as pairs. A bare ``K``: an error (``bare="error"``), the value
    of ``K`` in ``environ`` (``"environ"``, an error when unset, as act's ``-s K``), or
    that value or "" (``"environ-or-empty"``). Raises ``ConfigError`` naming ``flag``."""
    pairs = []
    for item in items:
        key, found, value = item.partition(sep)
        if not key or (not found and bare == "error"):
            raise ConfigError(f"{flag} expects K{sep}V, got {item!r}")
        if not found:
            env = environ or {}
            if bare == "environ" and key not in env:
                raise ConfigError(f"{flag} {key}: no value given and ${key} is not set")
            value = env.get(key, "")
        pairs.append((key, value))
    return tuple(pairs)


def read_dotenv(path: Path, flag: str, environ: Mapping[str, str] | None = None) -> Pairs:
    """A dotenv file parsed by ``python-dotenv`` (quotes, escapes, multi-line quoted
    values such as a PEM key, ``export``, ``# comments`` after unquoted values). ``${VAR}``
    is expanded from the lines above, then ``environ``, except in single quotes (literal,
    as in act). A bare ``K`` line gives "". Raises ``ConfigError`` naming ``flag``, the
    file and the line for an unreadable file or a line it cannot parse."""
    import io

    from dotenv.parser import parse_stream
    from dotenv.variables import parse_variables

    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{flag} {path}: {exc}") from exc
    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            first = (binding.original.string.splitlines() or [""])[0]
            raise ConfigError(f"{flag} {path}:{binding.original.line}: cannot parse {first!r}")
        if binding.key is None:
            continue
        value = binding.value or ""
        if not _single_quoted(binding.original.string):
            scope: dict[str, str | None] = {**(environ or {}), **values}
            value = "".join(atom.resolve(scope) for atom in parse_variables(value))
        values[binding.key] = value
    return tuple(values.items())


def _single_quoted(line: str) -> bool:
    """Whether a dotenv binding's value is in single quotes (``K='v'``)."""
    return line.partition("=")[2].lstrip().startswith("'")


def read_secret_file(path: Path) -> Pairs:
    """A dotenv file of secrets (see :func:`read_dotenv`)."""
    return read_dotenv(path, "--secret-file")
