"""Whether a workflow's ``on:`` runs for an event: event names, activity types, ref filters
and path filters, with GitHub's documented semantics.

Pure code. Rules implemented (docs: "Events that trigger workflows", "Workflow syntax",
"Filter pattern cheat sheet"):

* ``on`` is an event name, a list of names, or a mapping from name to configuration
  (``null``/``{}`` meaning no filters).
* ``types`` filters activity events; without it ``pull_request`` and
  ``pull_request_target`` run only for ``opened``, ``synchronize`` and ``reopened``, and
  every other event for all its types.
* ``push``: ``branches``/``branches-ignore`` apply to branch pushes, ``tags``/
  ``tags-ignore`` to tag pushes. Defining only branch filters means tag pushes never run,
  and vice versa. ``paths``/``paths-ignore`` must also pass, and are not evaluated for
  tag pushes.
* ``pull_request``/``pull_request_target``/``merge_group``: branch filters match the
  *base* branch. ``workflow_run``: they match the triggering run's head branch (``ref``),
  and ``workflows`` lists the workflow names that trigger it.
* ``paths``: runs if at least one changed file is included; ``paths-ignore``: skips only
  if every changed file is ignored. ``!`` patterns are evaluated in order, later ones
  overriding earlier ones, per file.
* ``schedule``: runs for any cron, or only the listed one when the cron that fired is
  known.

Unknown facts never filter a run out: a ``None`` ref, base ref, action or file list lets
the corresponding filter pass (the decision's reason says so). Not implemented: the
300-file diff limit, and the special cases of branch creation and deletion pushes.
Patterns are compiled by :func:`compile_pattern`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vmrunner.errors import UserInputError

DEFAULT_TYPES: Mapping[str, tuple[str, ...]] = {
    "pull_request": ("opened", "synchronize", "reopened"),
    "pull_request_target": ("opened", "synchronize", "reopened"),
}
"""Events whose default activity types are not "all of them"."""

_BASE_BRANCH_EVENTS = frozenset({"pull_request", "pull_request_target", "merge_group"})
_PATH_EVENTS = frozenset({"push", "pull_request", "pull_request_target"})


class TriggerError(UserInputError):
    """An ``on:`` section or filter pattern that cannot be used."""


@dataclass(frozen=True, slots=True)
class EventInfo:
    """What is known about the event. ``None`` means unknown (the filter then passes).

    ``ref`` is the pushed ref (``refs/heads/main``, ``refs/tags/v1``; a bare name is a
    branch) or, for ``workflow_run``, the triggering run's head branch. ``base_ref`` is a
    pull request's base branch (bare or ``refs/heads/``). ``action`` is the activity type
    (``repository_dispatch``: the event type). ``workflow`` is the name of the workflow
    that completed (``workflow_run``); ``schedule`` the cron that fired.
    """

    ref: str | None = None
    base_ref: str | None = None
    changed_files: Sequence[str] | None = None
    action: str | None = None
    workflow: str | None = None
    schedule: str | None = None


@dataclass(frozen=True, slots=True)
class TriggerDecision:
    """Whether the workflow runs, and a one-line human-readable reason."""

    matched: bool
    reason: str


def triggered(on: Any, event_name: str, event: EventInfo) -> TriggerDecision:
    """Decide whether a workflow with this ``on:`` runs for ``event_name``/``event``.

    Raises :class:`TriggerError` for a malformed ``on:``, both a filter and its
    ``-ignore`` form on one event, or an invalid pattern, whichever event is asked about.
    Does not validate the rest of the event configuration (inputs, cron syntax): that is
    the schema's job.
    """
    events = _normalise_on(on)
    for config in events.values():
        if isinstance(config, Mapping):
            _validate_filters(config)
    if event_name not in events:
        return TriggerDecision(False, f"the workflow does not run on '{event_name}'")
    config = events[event_name]
    if event_name == "schedule":
        return _check_schedule(config, event)
    if not isinstance(config, Mapping):
        config = {}
    for check in (_check_types, _check_workflows, _check_refs, _check_paths):
        failed = check(event_name, config, event)
        if failed is not None:
            return TriggerDecision(False, f"{event_name}: {failed}")
    return TriggerDecision(True, f"{event_name}: every filter passed")


def _normalise_on(on: Any) -> Mapping[str, Any]:
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, Sequence):
        if not all(isinstance(name, str) for name in on):
            raise TriggerError(f"'on' must list event names, got {list(on)!r}")
        return dict.fromkeys(on)
    if isinstance(on, Mapping):
        return on
    raise TriggerError(f"'on' must be an event name, a list or a mapping, not {on!r}")


def _validate_filters(config: Mapping[str, Any]) -> None:
    """Raise for a filter given with its ``-ignore`` form, or a pattern that is invalid."""
    for key in ("branches", "tags", "paths"):
        for patterns in _pair(config, key):
            for pattern in patterns or ():
                compile_pattern(pattern)


def _check_schedule(config: Any, event: EventInfo) -> TriggerDecision:
    entries = config if isinstance(config, Sequence) and not isinstance(config, str) else ()
    crons = [e.get("cron") for e in entries if isinstance(e, Mapping)]
    if event.schedule is None or event.schedule in crons:
        return TriggerDecision(True, "schedule: the workflow runs on a schedule")
    return TriggerDecision(False, f"schedule: cron '{event.schedule}' is not one of {crons}")


def _strings(config: Mapping[str, Any], key: str) -> list[str] | None:
    """The list under ``key`` (a lone string is a one-item list), or None if absent."""
    if key not in config:
        return None
    value = config[key]
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TriggerError(f"'{key}' must be a list of strings, not {value!r}")


def _pair(config: Mapping[str, Any], key: str) -> tuple[list[str] | None, list[str] | None]:
    """The ``key`` and ``key-ignore`` filters; both at once is an error."""
    include, ignore = _strings(config, key), _strings(config, f"{key}-ignore")
    if include is not None and ignore is not None:
        raise TriggerError(f"you cannot use both '{key}' and '{key}-ignore' for the same event")
    return include, ignore


def _check_types(event_name: str, config: Mapping[str, Any], event: EventInfo) -> str | None:
    given = _strings(config, "types")
    types = list(DEFAULT_TYPES.get(event_name, ())) if given is None else given
    default = given is None
    if default and not types:
        return None
    if event.action is None or event.action in types:
        return None
    which = "default types" if default else "types"
    return f"activity type '{event.action}' is not in the {which} {types}"


def _check_workflows(event_name: str, config: Mapping[str, Any], event: EventInfo) -> str | None:
    workflows = _strings(config, "workflows")
    if event_name != "workflow_run" or workflows is None or event.workflow is None:
        return None
    if event.workflow in workflows:
        return None
    return f"workflow '{event.workflow}' is not in workflows {workflows}"


def _check_refs(event_name: str, config: Mapping[str, Any], event: EventInfo) -> str | None:
    branches = _pair(config, "branches")
    if event_name == "push":
        tags = _pair(config, "tags")
        return _check_push_ref(event.ref, branches, tags)
    if event_name in _BASE_BRANCH_EVENTS:
        return _check_branch(event.base_ref, branches, "base branch")
    if event_name == "workflow_run":
        return _check_branch(event.ref, branches, "head branch")
    return None


Filters = tuple[list[str] | None, list[str] | None]


def _check_push_ref(ref: str | None, branches: Filters, tags: Filters) -> str | None:
    if ref is None:
        return None
    kind, name = split_ref(ref)
    mine, other = (branches, tags) if kind == "branch" else (tags, branches)
    if kind is None:
        if branches == (None, None) and tags == (None, None):
            return None
        return f"ref '{ref}' is neither a branch nor a tag"
    if mine == (None, None):
        if other == (None, None):
            return None
        other_kind = "tag" if kind == "branch" else "branch"
        return f"{kind} '{name}' was pushed but only {other_kind} filters are defined"
    return _apply(mine, name, kind)


def _check_branch(ref: str | None, branches: Filters, what: str) -> str | None:
    if ref is None or branches == (None, None):
        return None
    return _apply(branches, split_ref(ref)[1], what)


def _apply(filters: Filters, name: str, what: str) -> str | None:
    include, ignore = filters
    if include is not None and not matches_filter(include, name):
        return f"{what} '{name}' does not match {include}"
    if ignore is not None and matches_filter(ignore, name):
        return f"{what} '{name}' is ignored by {ignore}"
    return None


def _check_paths(event_name: str, config: Mapping[str, Any], event: EventInfo) -> str | None:
    if event_name not in _PATH_EVENTS:
        return None
    include, ignore = _pair(config, "paths")
    files = event.changed_files
    is_tag = event_name == "push" and event.ref is not None and split_ref(event.ref)[0] == "tag"
    if files is None or is_tag:
        return None
    if include is not None and not any(matches_filter(include, f) for f in files):
        return f"no changed file matches paths {include}"
    if ignore is not None and all(matches_filter(ignore, f) for f in files):
        return f"every changed file is ignored by paths-ignore {ignore}"
    return None


def split_ref(ref: str) -> tuple[str | None, str]:
    """``("branch", name)`` for ``refs/heads/name`` or a bare name, ``("tag", name)`` for
    ``refs/tags/name``, ``(None, ref)`` for any other ``refs/...``."""
    for prefix, kind in (("refs/heads/", "branch"), ("refs/tags/", "tag")):
        if ref.startswith(prefix):
            return kind, ref[len(prefix) :]
    return (None, ref) if ref.startswith("refs/") else ("branch", ref)


def matches_filter(patterns: Sequence[str], value: str) -> bool:
    """Whether ``value`` is selected by an ordered pattern list: a matching pattern
    selects it, a matching ``!pattern`` deselects it, the last match wins, and nothing
    is selected by default."""
    selected = False
    for pattern in patterns:
        negated, regex = compile_pattern(pattern)
        if negated == selected and regex.fullmatch(value):
            selected = not negated
    return selected


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> tuple[bool, re.Pattern[str]]:
    """``(negated, regex)`` for a filter pattern (GitHub's filter pattern cheat sheet).

    ``*`` matches any run of characters but ``/``; ``**`` any run at all, and ``**/``
    zero or more whole directories; ``?`` and ``+`` make the preceding character optional
    or repeatable; ``[...]`` is one character from a set of alphanumerics and ranges
    (``a-z``, ``A-Z``, ``0-9`` only); ``\\`` escapes the next character; a leading ``!``
    negates. Raises :class:`TriggerError` for an empty pattern, empty or unclosed
    brackets, a bad range, or a trailing backslash.
    """
    negated = pattern.startswith("!")
    body = pattern[1:] if negated else pattern
    if not body:
        raise TriggerError(f"invalid filter pattern {pattern!r}: it is empty")
    return negated, re.compile(_Translator(pattern, body).translate())


class _Translator:
    """Turns one pattern body into a regular expression, token by token."""

    def __init__(self, pattern: str, body: str) -> None:
        self.pattern, self.body, self.pos = pattern, body, 0
        self.out: list[str] = []

    def fail(self, why: str) -> TriggerError:
        return TriggerError(f"invalid filter pattern {self.pattern!r}: {why}")

    def translate(self) -> str:
        while self.pos < len(self.body):
            self.step(self.body[self.pos])
        return "".join(self.out)

    def step(self, char: str) -> None:
        if char in "?+" and self.out:
            self.out[-1] = f"(?:{self.out[-1]}){char}"  # quantifies the preceding atom
            self.pos += 1
        elif char == "*":
            self.star()
        elif char == "[":
            self.bracket()
        elif char == "\\":
            if self.pos + 1 >= len(self.body):
                raise self.fail("nothing to escape after '\\'")
            self.out.append(re.escape(self.body[self.pos + 1]))
            self.pos += 2
        else:
            self.out.append(re.escape(char))
            self.pos += 1

    def star(self) -> None:
        if self.body.startswith("**/", self.pos):
            self.out.append("(?:.+/)?")
            self.pos += 3
        elif self.body.startswith("**", self.pos):
            self.out.append(".*")
            self.pos += 2
        else:
            self.out.append("[^/]*")
            self.pos += 1

    def bracket(self) -> None:
        end = self.body.find("]", self.pos + 1)
        if end < 0:
            raise self.fail("missing closing ']'")
        inside = self.body[self.pos + 1 : end]
        if not inside:
            raise self.fail("empty brackets '[]'")
        if not re.fullmatch(r"(?:[a-z]-[a-z]|[A-Z]-[A-Z]|[0-9]-[0-9]|[A-Za-z0-9])+", inside):
            raise self.fail(f"'[{inside}]' may hold only a-z, A-Z, 0-9 and ranges of them")
        for low, high in re.findall(r"(.)-(.)", inside):
            if low > high:
                raise self.fail(f"range '{low}-{high}' is reversed")
        self.out.append(f"[{inside}]")
        self.pos = end + 1
