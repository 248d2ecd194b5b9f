"""Workflow command parsing: the docs' examples, the runner's escaping and stop-commands."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.workflow.commands import (
    COMMANDS,
    Annotation,
    CommandParser,
    escape_data,
    escape_property,
    format_command,
    parse_command,
    unescape_data,
    unescape_property,
)

# (line, kind, data, properties)
LINES: list[tuple[str, str, str, dict[str, str]]] = [
    ("hello world", "text", "", {}),
    ("", "text", "", {}),
    ("::", "text", "", {}),
    ("::error", "text", "", {}),
    ("::unknown::x", "text", "", {}),
    ("::Error::x", "text", "", {}),  # names are case-sensitive
    (": :error::x", "text", "", {}),
    ("x ::error::x", "text", "", {}),
    # docs examples
    ("::debug::Set the Octocat variable", "debug", "Set the Octocat variable", {}),
    (
        "::notice file=app.js,line=1,col=5,endColumn=7::Missing semicolon",
        "notice",
        "Missing semicolon",
        {"file": "app.js", "line": "1", "col": "5", "endColumn": "7"},
    ),
    (
        "::warning file=app.js,line=1,col=5,endColumn=7,title=YOUR-TITLE::Missing semicolon",
        "warning",
        "Missing semicolon",
        {"file": "app.js", "line": "1", "col": "5", "endColumn": "7", "title": "YOUR-TITLE"},
    ),
    (
        "::error file=app.js,line=1,col=5,endColumn=7::Missing semicolon",
        "error",
        "Missing semicolon",
        {"file": "app.js", "line": "1", "col": "5", "endColumn": "7"},
    ),
    ("::group::My title", "group", "My title", {}),
    ("::endgroup::", "endgroup", "", {}),
    ("::add-mask::Mona The Octocat", "add-mask", "Mona The Octocat", {}),
    (
        "::set-output name=action_fruit::strawberry",
        "set-output",
        "strawberry",
        {"name": "action_fruit"},
    ),
    ("::save-state name=processID::12345", "save-state", "12345", {"name": "processID"}),
    ("::echo::on", "echo", "on", {}),
    ("::echo::OFF", "echo", "OFF", {}),
    (
        "::add-matcher::.github/problem-matcher.json",
        "add-matcher",
        ".github/problem-matcher.json",
        {},
    ),
    ("::remove-matcher owner=eslint-compact::", "remove-matcher", "", {"owner": "eslint-compact"}),
    # whitespace, escaping and property splitting
    ("   ::debug::indented", "debug", "indented", {}),
    ("\t::debug::tab", "debug", "tab", {}),
    ("::debug::  keeps  spaces  ", "debug", "  keeps  spaces  ", {}),
    ("::debug::a::b::c", "debug", "a::b::c", {}),
    ("::error::line1%0Aline2%0D%0A100%25", "error", "line1\nline2\r\n100%", {}),
    ("::error::%250A stays", "error", "%0A stays", {}),
    ("::error::%0a lower case stays", "error", "%0a lower case stays", {}),
    ("::error::%3A%2C not data escapes", "error", "%3A%2C not data escapes", {}),
    ("::error title=a%3Ab%2Cc%25d%0Ae::m", "error", "m", {"title": "a:b,c%d\ne"}),
    ("::error title=a=b,file=x::m", "error", "m", {"title": "a=b", "file": "x"}),
    ("::error  title=t , ,,file=f::m", "error", "m", {"title": "t ", "file": "f"}),
    ("::error title=,=x,file::m", "error", "m", {}),
    ("::error title=t,title=u::m", "error", "m", {"title": "u"}),
    ("::error title=trailing blank ::m", "error", "m", {"title": "trailing blank"}),
    ("::error title=x ::", "error", "", {"title": "x"}),
    ("::endgroup", "text", "", {}),
    ("::error::", "error", "", {}),
    ("::debug::trailing newline\n", "debug", "trailing newline", {}),
    ("::debug::crlf\r\n", "debug", "crlf", {}),
]


@pytest.mark.parametrize(("line", "kind", "data", "properties"), LINES)
def test_feed_line(line: str, kind: str, data: str, properties: dict[str, str]) -> None:
    parsed = CommandParser().feed_line(line)
    assert parsed.kind == kind, parsed.message
    assert parsed.data == data
    assert dict(parsed.properties) == properties
    assert parsed.is_command is (kind != "text")
    assert parsed.raw == line.removesuffix("\n").removesuffix("\r")
    if kind == "text":
        assert parsed.command is None
    else:
        assert parsed.command == kind


INVALID: list[tuple[str, str, dict[str, Any]]] = [
    ("::set-output::x", "Required field 'name' is missing in ##[set-output] command.", {}),
    ("::save-state nme=a::x", "Required field 'name' is missing in ##[save-state] command.", {}),
    ("::set-env name=A::x", "The `set-env` command is disabled", {}),
    ("::add-path::/x", "The `add-path` command is disabled", {}),
    ("::stop-commands::", "Invalid stop-commands token", {}),
    ("::stop-commands::pause-logging", "Invalid stop-commands token", {}),
    ("::stop-commands::Add-Mask", "Invalid stop-commands token", {}),
    ("::echo::maybe", "Invalid echo command value", {}),
    ("::set-env::x", "Required field 'name'", {"allow_unsecure_commands": True}),
]


@pytest.mark.parametrize(("line", "message", "options"), INVALID)
def test_invalid_commands(line: str, message: str, options: dict[str, Any]) -> None:
    parser = CommandParser(**options)
    parsed = parser.feed_line(line)
    assert parsed.kind == "invalid"
    assert parsed.message is not None and message in parsed.message
    assert parsed.is_command
    assert parser.stop_token is None


def test_unsecure_commands_when_allowed() -> None:
    parser = CommandParser(allow_unsecure_commands=True)
    parsed = parser.feed_line("::set-env name=A::1")
    assert (parsed.kind, parsed.data, dict(parsed.properties), parsed.message) == (
        "set-env",
        "1",
        {"name": "A"},
        None,
    )
    assert parser.feed_line("::add-path::/opt/bin").kind == "add-path"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("::set-output name=a::b", "The `set-output` command is deprecated"),
        ("::save-state name=a::b", "The `save-state` command is deprecated"),
        ("::add-mask::", "Can't add secret mask for empty string"),
        ("::add-mask::   ", "Can't add secret mask for empty string"),
    ],
)
def test_warnings(line: str, message: str) -> None:
    parsed = CommandParser().feed_line(line)
    assert parsed.kind != "invalid"
    assert parsed.message is not None and message in parsed.message


def test_stop_commands() -> None:
    # docs: "Stopping and starting workflow commands"
    parser = CommandParser()
    kinds = [
        parser.feed_line(line).kind
        for line in [
            "::warning:: This is a warning message, to demonstrate that commands are being processed.",
            "::stop-commands::pause-token-1f3a",
            "::warning:: This will NOT be rendered as a warning, because stop-commands has been invoked.",
            "::add-mask::not-a-mask",
            "::stop-commands::other",
            "::other::",
            "::pause-token-1f3a-longer::",
            "  ::PAUSE-TOKEN-1F3A prop=x::ignored data",
            "::warning:: This is a warning again, because stop-commands has been turned off.",
        ]
    ]
    assert kinds == [
        "warning",
        "stop-commands",
        "text",
        "text",
        "text",  # a nested stop-commands is ignored: it cannot swap the token
        "text",
        "text",
        "resume-commands",
        "warning",
    ]
    assert parser.stop_token is None


def test_stop_commands_token_and_resume_line() -> None:
    parser = CommandParser()
    stop = parser.feed_line("::stop-commands::tok%25en")
    assert (stop.kind, stop.data, parser.stop_token) == ("stop-commands", "tok%en", "tok%en")
    resume = parser.feed_line("::tok%en::")
    assert (resume.kind, resume.data, resume.command) == ("resume-commands", "tok%en", "tok%en")


@pytest.mark.parametrize(
    ("line", "annotation"),
    [
        (
            "::error file=app.js,line=1,endLine=2,col=5,endColumn=7,title=T::Missing",
            Annotation("error", "Missing", "app.js", 1, 2, 5, 7, "T"),
        ),
        ("::notice::plain", Annotation("notice", "plain")),
        ("::warning line=x,col=-3::m", Annotation("warning", "m", line=None, col=-3)),
        ("::debug::x", None),
        ("text", None),
    ],
)
def test_annotation(line: str, annotation: Annotation | None) -> None:
    assert CommandParser().feed_line(line).annotation() == annotation


def test_parse_command_is_stateless() -> None:
    assert parse_command("::stop-commands::x") == ("stop-commands", {}, "x")
    assert parse_command("::x::", frozenset({"x"})) == ("x", {}, "")
    assert parse_command("::error::x", frozenset({"x"})) is None


@pytest.mark.parametrize(
    ("text", "data", "prop"),
    [
        ("100%", "100%25", "100%25"),
        ("a\r\nb", "a%0D%0Ab", "a%0D%0Ab"),
        ("a:b,c", "a:b,c", "a%3Ab%2Cc"),
        ("%0A", "%250A", "%250A"),
    ],
)
def test_escaping(text: str, data: str, prop: str) -> None:
    assert escape_data(text) == data
    assert escape_property(text) == prop
    assert unescape_data(data) == text
    assert unescape_property(prop) == text


texts = st.text(alphabet="ab%0ADC,:=\r\n \t😊", max_size=20)
keys = st.text(alphabet="abcXYZ_-", min_size=1, max_size=6)
# the runner trims the property list, so a trailing blank in the last value is lost
property_values = texts.filter(lambda v: v != "" and v == v.rstrip(" \t"))


@given(texts)
def test_escape_round_trip(text: str) -> None:
    assert unescape_data(escape_data(text)) == text
    assert unescape_property(escape_property(text)) == text


@given(
    st.sampled_from(["error", "warning", "notice", "debug", "group"]),
    st.dictionaries(keys, property_values),
    texts,
)
def test_format_command_round_trip(name: str, properties: dict[str, str], data: str) -> None:
    line = format_command(name, properties, data)
    assert "\n" not in line and "\r" not in line
    parsed = CommandParser().feed_line(line)
    assert (parsed.kind, dict(parsed.properties), parsed.data) == (name, properties, data)


@given(st.text(max_size=40))
def test_any_line_parses(line: str) -> None:
    parsed = CommandParser().feed_line(line)
    assert parsed.kind in COMMANDS | {"text", "invalid", "resume-commands"}
