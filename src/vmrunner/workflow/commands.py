"""Workflow commands in a step's output (``::name key=value,...::data``), parsed as the
runner's ``ActionCommand.TryParseV2`` and ``ActionCommandManager`` do.

Pure code: :class:`CommandParser` classifies lines; the caller acts on them (registers
masks, records annotations and outputs, folds groups, marks the step failed for an
``invalid`` line). Rules:

* Leading whitespace is ignored. A line is a command only if it starts with ``::``, has a
  second ``::``, and the name (up to the first space) is a known command; anything else
  is ``text``. Names are case-sensitive.
* Properties are ``key=value`` pairs split at ``,``; pairs with an empty key or value
  are dropped. Escapes are undone with the runner's sequential replacements: ``%0D``,
  ``%0A``, ``%25`` in data, plus ``%3A`` and ``%2C`` in property values.
* ``::stop-commands::TOKEN`` stops command processing until a line ``::TOKEN::``
  (compared case-insensitively). The token must not be empty, ``pause-logging`` or a
  command name. While stopped, a new ``stop-commands`` is plain text (stricter than
  the runner, so output that is being ignored cannot swap the token).
* ``set-env`` and ``add-path`` are disabled unless ``allow_unsecure_commands``;
  ``set-output`` and ``save-state`` work but carry their deprecation warning.

Does not support the legacy ``##[command]`` form, and does not decide whether command
lines are echoed to the log.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

COMMANDS = frozenset(
    {
        "add-mask", "add-matcher", "remove-matcher", "echo", "debug", "notice", "warning",
        "error", "group", "endgroup", "set-output", "save-state", "set-env", "add-path",
        "stop-commands",
    }
)  # fmt: skip
"""The command names the runner registers."""

_DATA_ESCAPES = (("\r", "%0D"), ("\n", "%0A"), ("%", "%25"))
_PROPERTY_ESCAPES = (("\r", "%0D"), ("\n", "%0A"), (":", "%3A"), (",", "%2C"), ("%", "%25"))

_DEPRECATED = (
    "The `{0}` command is deprecated and will be disabled soon. Please upgrade to using "
    "Environment Files. For more information see: https://github.blog/changelog/"
    "2022-10-11-github-actions-deprecating-save-state-and-set-output-commands/"
)
_UNSECURE = (
    "The `{0}` command is disabled. Please upgrade to using Environment Files or opt into "
    "unsecure command execution by setting the `ACTIONS_ALLOW_UNSECURE_COMMANDS` "
    "environment variable to `true`. For more information see: https://github.blog/"
    "changelog/2020-10-01-github-actions-deprecating-set-env-and-add-path-commands/"
)

AnnotationLevel = Literal["error", "warning", "notice"]
_LEVELS: Mapping[str, AnnotationLevel] = {
    "error": "error",
    "warning": "warning",
    "notice": "notice",
}
_NO_PROPERTIES: Mapping[str, str] = MappingProxyType({})


def unescape_data(text: str) -> str:
    """Undo command-data escaping (``%0D``, ``%0A``, ``%25``), in the runner's order."""
    for token, replacement in _DATA_ESCAPES:
        text = text.replace(replacement, token)
    return text


def unescape_property(text: str) -> str:
    """Undo property escaping (adds ``%3A`` and ``%2C``), in the runner's order."""
    for token, replacement in _PROPERTY_ESCAPES:
        text = text.replace(replacement, token)
    return text


def escape_data(text: str) -> str:
    """Escape command data as ``@actions/core`` does."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a property value as ``@actions/core`` does."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def format_command(name: str, properties: Mapping[str, str] | None = None, data: str = "") -> str:
    """The line that issues a command, with escaping (``@actions/core``'s ``issueCommand``)."""
    props = ",".join(f"{k}={escape_property(v)}" for k, v in (properties or {}).items())
    return f"::{name}{' ' + props if props else ''}::{escape_data(data)}"


@dataclass(frozen=True, slots=True)
class Annotation:
    """An ``error``/``warning``/``notice`` with its location (invalid numbers are None)."""

    level: AnnotationLevel
    message: str
    file: str | None = None
    line: int | None = None
    end_line: int | None = None
    col: int | None = None
    end_column: int | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """One classified output line.

    ``kind`` is ``"text"`` (not a command), a command name from :data:`COMMANDS`,
    ``"resume-commands"`` (the ``::TOKEN::`` that ends ``stop-commands``; ``data`` is the
    token) or ``"invalid"`` (a command the runner rejects: ``message`` says why, and the
    step fails). For valid commands ``message`` may carry a warning to show.
    """

    kind: str
    raw: str
    command: str | None = None
    data: str = ""
    properties: Mapping[str, str] = field(default_factory=lambda: _NO_PROPERTIES)
    message: str | None = None

    @property
    def is_command(self) -> bool:
        """True for every kind but ``text``."""
        return self.kind != "text"

    def annotation(self) -> Annotation | None:
        """The annotation of an ``error``/``warning``/``notice`` line, else None."""
        level = _LEVELS.get(self.kind)
        if level is None:
            return None
        p = self.properties
        return Annotation(
            level=level,
            message=self.data,
            file=p.get("file"),
            line=_int(p.get("line")),
            end_line=_int(p.get("endLine")),
            col=_int(p.get("col")),
            end_column=_int(p.get("endColumn")),
            title=p.get("title"),
        )


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse_command(
    line: str, names: frozenset[str] = COMMANDS
) -> tuple[str, dict[str, str], str] | None:
    """``(name, properties, data)`` if ``line`` is a command whose name is in ``names``,
    else None. Stateless: ``stop-commands`` is :class:`CommandParser`'s business."""
    message = line.lstrip()
    if not message.startswith("::"):
        return None
    end = message.find("::", 2)
    if end < 0:
        return None
    info = message[2:end]
    name, space, props = info.partition(" ")
    if name not in names:
        return None
    properties: dict[str, str] = {}
    if space and name:
        for item in props.strip().split(","):
            key, _, value = item.partition("=")
            if key and value:
                properties[key] = unescape_property(value)
    return name, properties, unescape_data(message[end + 2 :])


class CommandParser:
    """Classifies a step's output lines one at a time; remembers ``stop-commands``.

    Pure (no I/O); one instance per step, fed every line in order.
    """

    def __init__(self, *, allow_unsecure_commands: bool = False) -> None:
        self.allow_unsecure_commands = allow_unsecure_commands
        self.stop_token: str | None = None

    def feed_line(self, line: str) -> ParsedLine:
        """Classify one line (a trailing ``\\n`` or ``\\r\\n`` is ignored)."""
        raw = line.removesuffix("\n").removesuffix("\r")
        if self.stop_token is not None:
            return self._while_stopped(raw, self.stop_token)
        parsed = parse_command(raw)
        if parsed is None:
            return ParsedLine("text", raw)
        name, properties, data = parsed
        command = ParsedLine(name, raw, name, data, MappingProxyType(properties))
        problem = self._problem(name, properties, data)
        if problem is not None:
            return replace(command, kind="invalid", message=problem)
        if name == "stop-commands":
            self.stop_token = data
        return replace(command, message=_warning(command))

    def _while_stopped(self, raw: str, token: str) -> ParsedLine:
        message = raw.lstrip()
        if message.startswith("::"):
            end = message.find("::", 2)
            name = message[2:end].partition(" ")[0] if end >= 0 else ""
            if end >= 0 and name.casefold() == token.casefold():
                self.stop_token = None
                return ParsedLine("resume-commands", raw, name, token)
        return ParsedLine("text", raw)

    def _problem(self, name: str, properties: Mapping[str, str], data: str) -> str | None:
        """Why the runner would reject this command, or None."""
        if name in ("set-env", "add-path") and not self.allow_unsecure_commands:
            return _UNSECURE.format(name)
        if name in ("set-output", "save-state", "set-env") and not properties.get("name"):
            return f"Required field 'name' is missing in ##[{name}] command."
        if name == "stop-commands" and (
            not data or data.casefold() == "pause-logging" or data.casefold() in _FOLDED_COMMANDS
        ):
            return f"Invalid stop-commands token {data!r}: it must not be empty, 'pause-logging' or a command name."
        if name == "echo" and data.casefold() not in ("on", "off"):
            return f"Invalid echo command value. Possible values can be: 'on', 'off'. Current value is: '{data}'."
        return None


_FOLDED_COMMANDS = frozenset(name.casefold() for name in COMMANDS)


def _warning(line: ParsedLine) -> str | None:
    """The warning the runner shows for a valid command, if any."""
    if line.kind in ("set-output", "save-state"):
        return _DEPRECATED.format(line.kind)
    if line.kind == "add-mask" and not line.data.strip():
        return "Can't add secret mask for empty string in ##[add-mask] command."
    return None
