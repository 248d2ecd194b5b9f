"""Parsers for the environment files a step writes: ``GITHUB_ENV``, ``GITHUB_OUTPUT``,
``GITHUB_STATE`` and ``GITHUB_PATH``, following the runner's ``FileCommandManager``.

Pure code: the caller reads the file (UTF-8) and applies the result.

Key-value files hold, line by line (``\\n`` endings; a ``\\r`` stays part of the line, as
on a Linux runner):

* blank lines, which are skipped;
* ``NAME=value`` (split at the first ``=``; the value may be empty or contain ``=``);
* ``NAME<<DELIMITER`` followed by value lines and a line that is exactly ``DELIMITER``.
  The value is the lines in between, joined by their newlines, without the newline
  before the delimiter. Only a line equal to the delimiter ends the value: a line merely
  containing it is value. So a value that contains the delimiter *as a whole line* ends
  early, and whatever follows is parsed as further lines (usually an error), exactly as
  the runner does; writers must pick a delimiter not in the value.

Which of ``=`` and ``<<`` comes first on a line decides its form. Names are taken
verbatim (no trimming); an empty name, or one containing a NUL, is an error, as is a line
with neither form or a heredoc whose delimiter never comes. Errors name the file and line.
Setting ``NODE_OPTIONS`` through ``GITHUB_ENV`` is refused with an issue, not an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from vmrunner.errors import UserInputError

FileKind = Literal["GITHUB_ENV", "GITHUB_OUTPUT", "GITHUB_STATE"]

BLOCKED_ENV_NAMES = frozenset({"NODE_OPTIONS"})
"""Names the runner refuses to set through ``GITHUB_ENV`` (compared case-insensitively)."""


class EnvFileError(UserInputError):
    """An environment file the runner would reject (the step then fails)."""

    def __init__(self, kind: str, line: int, message: str) -> None:
        super().__init__(f"{kind} line {line}: {message}")
        self.kind = kind
        self.line = line


@dataclass(frozen=True, slots=True)
class KeyValueFile:
    """The assignments of a key-value file in order (later ones win), and the issues
    (annotations the runner would show) raised while reading it."""

    pairs: tuple[tuple[str, str], ...]
    issues: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, str]:
        """The final value of every name."""
        return dict(self.pairs)


def parse_key_value_file(text: str, kind: FileKind = "GITHUB_OUTPUT") -> KeyValueFile:
    """Parse a ``GITHUB_ENV``/``GITHUB_OUTPUT``/``GITHUB_STATE`` file (see the module
    docstring). A leading BOM is ignored. Raises :class:`EnvFileError`."""
    text = text.removeprefix("\ufeff")
    lines = _split_lines(text)
    pairs: list[tuple[str, str]] = []
    issues: list[str] = []
    index = 0
    while index < len(lines):
        line, _ = lines[index]
        index += 1
        if not line:
            continue
        name, value, index = _assignment(kind, lines, index, line)
        if kind == "GITHUB_ENV" and name.upper() in BLOCKED_ENV_NAMES:
            issues.append(f"Can't store {name} output parameter using '$GITHUB_ENV' command.")
            continue
        pairs.append((name, value))
    return KeyValueFile(tuple(pairs), tuple(issues))


def parse_env_file(text: str) -> KeyValueFile:
    """A ``GITHUB_ENV`` file: environment variables for the following steps."""
    return parse_key_value_file(text, "GITHUB_ENV")


def parse_output_file(text: str) -> KeyValueFile:
    """A ``GITHUB_OUTPUT`` file: the step's outputs."""
    return parse_key_value_file(text, "GITHUB_OUTPUT")


def parse_state_file(text: str) -> KeyValueFile:
    """A ``GITHUB_STATE`` file: state for the action's ``pre``/``post`` steps."""
    return parse_key_value_file(text, "GITHUB_STATE")


def _split_lines(text: str) -> list[tuple[str, bool]]:
    """``(line, ended_by_newline)`` for every line; no empty entry after a final newline."""
    parts = text.split("\n")
    lines = [(part, True) for part in parts[:-1]]
    if parts[-1]:
        lines.append((parts[-1], False))
    return lines


def _assignment(
    kind: str, lines: list[tuple[str, bool]], index: int, line: str
) -> tuple[str, str, int]:
    """The name and value of the assignment starting at line ``index - 1``, and the index
    of the line after it."""
    number = index
    equals, heredoc = line.find("="), line.find("<<")
    if equals >= 0 and (heredoc < 0 or equals < heredoc):
        name, value = line.split("=", 1)
        _check_name(kind, number, name, line)
        return name, value, index
    if heredoc < 0:
        raise EnvFileError(
            kind, number, f"invalid format {line!r}: expected NAME=value or NAME<<DELIMITER"
        )
    name, delimiter = line.split("<<", 1)
    _check_name(kind, number, name, line)
    if not delimiter:
        raise EnvFileError(
            kind, number, f"invalid format {line!r}: the delimiter must not be empty"
        )
    return (name, *_heredoc(kind, lines, index, delimiter, number))


def _heredoc(
    kind: str, lines: list[tuple[str, bool]], index: int, delimiter: str, number: int
) -> tuple[str, int]:
    values: list[str] = []
    while index < len(lines):
        line, ended = lines[index]
        index += 1
        if line == delimiter:
            return "\n".join(values), index
        if not ended:
            message = f"the value's last line {line!r} has no newline and is not the delimiter"
            raise EnvFileError(kind, index, f"{message} {delimiter!r}")
        values.append(line)
    raise EnvFileError(kind, number, f"matching delimiter {delimiter!r} not found")


def _check_name(kind: str, number: int, name: str, line: str) -> None:
    if not name:
        raise EnvFileError(kind, number, f"invalid format {line!r}: the name must not be empty")
    if "\0" in name:
        raise EnvFileError(kind, number, f"invalid name {name!r}: it contains a NUL character")


def parse_path_file(text: str) -> tuple[str, ...]:
    """The directories of a ``GITHUB_PATH`` file, one per line, in file order; lines are
    split at ``\\r\\n``, ``\\n`` or ``\\r``, kept verbatim, and empty ones skipped."""
    return tuple(line for line in text.removeprefix("\ufeff").splitlines() if line)


def add_paths(prepend: Sequence[str], new_paths: Sequence[str]) -> tuple[str, ...]:
    """The runner's ``PrependPath`` list after adding ``new_paths``: each one is appended
    after removing any earlier occurrence. Use :func:`build_path` to apply it."""
    result = list(prepend)
    for path in new_paths:
        if path in result:
            result.remove(path)
        result.append(path)
    return tuple(result)


def build_path(prepend: Sequence[str], base_path: str) -> str:
    """``PATH`` for a step: the added directories, most recently added first, before
    ``base_path`` (``:``-separated; an empty ``base_path`` adds nothing)."""
    parts = [*reversed(prepend)]
    if base_path:
        parts.append(base_path)
    return ":".join(parts)
