"""Environment-file parsers: the docs' examples and the runner's edge cases."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmrunner.errors import UserInputError
from vmrunner.workflow.envfiles import (
    EnvFileError,
    KeyValueFile,
    add_paths,
    build_path,
    parse_env_file,
    parse_key_value_file,
    parse_output_file,
    parse_path_file,
    parse_state_file,
)

CASES: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("empty file", "", []),
    # docs: echo "{environment_variable_name}={value}" >> "$GITHUB_ENV"
    ("simple", "action_state=yellow\n", [("action_state", "yellow")]),
    ("no final newline", "A=1", [("A", "1")]),
    ("empty value", "A=\n", [("A", "")]),
    ("value with equals", "URL=a=b==c\n", [("URL", "a=b==c")]),
    ("blank lines skipped", "\n\nA=1\n\nB=2\n", [("A", "1"), ("B", "2")]),
    ("later wins in dict", "A=1\nA=2\n", [("A", "1"), ("A", "2")]),
    ("no trimming", " A = 1 \n", [(" A ", " 1 ")]),
    ("carriage return kept", "A=1\r\n", [("A", "1\r")]),
    ("equals before heredoc", "A=x<<EOF\n", [("A", "x<<EOF")]),
    # docs: multiline strings
    (
        "docs heredoc",
        'JSON_RESPONSE<<EOF\n{\n  "a": 1\n}\nEOF\n',
        [("JSON_RESPONSE", '{\n  "a": 1\n}')],
    ),
    ("heredoc without final newline", "A<<EOF\nx\nEOF", [("A", "x")]),
    ("empty heredoc", "A<<EOF\nEOF\nB=1\n", [("A", ""), ("B", "1")]),
    ("heredoc with blank lines", "A<<EOF\n\nx\n\nEOF\n", [("A", "\nx\n")]),
    ("heredoc keeps indentation", "A<<EOF\n  x\n\ty\nEOF\n", [("A", "  x\n\ty")]),
    ("delimiter inside a line is value", "A<<EOF\nxEOF\nEOF x\nEOF\n", [("A", "xEOF\nEOF x")]),
    ("indented delimiter is value", "A<<EOF\n EOF\nEOF\n", [("A", " EOF")]),
    ("heredoc name with equals after", "A<<B=C\nv\nB=C\n", [("A", "v")]),
    (
        "random delimiter",
        "V<<ghadelimiter_1f2e\nline1\nline2\nghadelimiter_1f2e\n",
        [("V", "line1\nline2")],
    ),
    ("heredoc then simple", "A<<X\n1\nX\nB=2\n", [("A", "1"), ("B", "2")]),
    ("bom ignored", "\ufeffA=1\n", [("A", "1")]),
]


@pytest.mark.parametrize(("text", "pairs"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parse_key_value_file(text: str, pairs: list[tuple[str, str]]) -> None:
    for parse in (parse_env_file, parse_output_file, parse_state_file):
        parsed = parse(text)
        assert parsed.pairs == tuple(pairs)
        assert parsed.issues == ()


def test_value_containing_the_delimiter_line() -> None:
    # The writer meant A="x\nEOF\nB=y"; the runner stops at the first EOF line and
    # then sees "B=y" as a new assignment and "EOF" as a malformed line.
    with pytest.raises(EnvFileError, match="line 5: invalid format 'EOF'"):
        parse_output_file("A<<EOF\nx\nEOF\nB=y\nEOF\n")
    assert parse_output_file("A<<EOF\nx\nEOF\nB=y\n").as_dict() == {"A": "x", "B": "y"}


def test_as_dict_last_wins() -> None:
    assert KeyValueFile((("A", "1"), ("B", "2"), ("A", "3"))).as_dict() == {"A": "3", "B": "2"}


ERRORS: list[tuple[str, str]] = [
    ("A\n", "GITHUB_OUTPUT line 1: invalid format 'A': expected NAME=value"),
    ("A=1\nnonsense\n", "line 2: invalid format 'nonsense'"),
    ("=value\n", "line 1: .*name must not be empty"),
    ("<<EOF\nx\nEOF\n", "line 1: .*name must not be empty"),
    ("A<<\nx\n", "line 1: .*delimiter must not be empty"),
    ("A=1\nB<<EOF\nx\ny\n", "line 2: matching delimiter 'EOF' not found"),
    ("B<<EOF\n", "line 1: matching delimiter 'EOF' not found"),
    ("B<<EOF\nx\nEOF\r\n", "line 1: matching delimiter 'EOF' not found"),
    ("B<<EOF\nx\ny", "line 3: the value's last line 'y' has no newline"),
    ("A\0B=1\n", "NUL"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(EnvFileError, match=message) as info:
        parse_key_value_file(text)
    assert isinstance(info.value, UserInputError)


def test_error_names_the_file_kind() -> None:
    with pytest.raises(EnvFileError, match=r"^GITHUB_ENV line 1") as info:
        parse_env_file("oops\n")
    assert (info.value.kind, info.value.line) == ("GITHUB_ENV", 1)


def test_node_options_is_blocked_in_github_env_only() -> None:
    parsed = parse_env_file("A=1\nnode_options=--require x\nNODE_OPTIONS<<E\ny\nE\n")
    assert parsed.pairs == (("A", "1"),)
    assert len(parsed.issues) == 2
    assert "Can't store node_options output parameter using '$GITHUB_ENV' command." in parsed.issues
    assert parse_output_file("NODE_OPTIONS=x\n").pairs == (("NODE_OPTIONS", "x"),)


names = st.text(alphabet="ABCxyz_09-. ", min_size=1, max_size=8).filter(
    lambda n: "=" not in n and "<<" not in n
)
values = st.text(alphabet="abc =<>\t\r\n%😊", max_size=20)


@given(st.lists(st.tuples(names, values), max_size=5))
def test_heredoc_round_trip(pairs: list[tuple[str, str]]) -> None:
    """Any value written with a delimiter that is not one of its lines reads back."""
    delimiter = "ghadelimiter_x"
    text = "".join(f"{name}<<{delimiter}\n{value}\n{delimiter}\n" for name, value in pairs)
    assert parse_output_file(text).pairs == tuple(pairs)


@given(st.lists(st.tuples(names, values.filter(lambda v: "\n" not in v)), max_size=5))
def test_simple_round_trip(pairs: list[tuple[str, str]]) -> None:
    text = "".join(f"{name}={value}\n" for name, value in pairs)
    assert parse_output_file(text).pairs == tuple(pairs)


@pytest.mark.parametrize(
    ("text", "paths"),
    [
        ("", ()),
        # docs: echo "$HOME/.local/bin" >> "$GITHUB_PATH"
        ("/home/runner/.local/bin\n", ("/home/runner/.local/bin",)),
        ("/a\n\n/b\r\n/c\r/d", ("/a", "/b", "/c", "/d")),
        (" /with space \n", (" /with space ",)),
    ],
)
def test_parse_path_file(text: str, paths: tuple[str, ...]) -> None:
    assert parse_path_file(text) == paths


def test_paths_are_prepended_most_recent_first() -> None:
    prepend = add_paths((), parse_path_file("/a\n/b\n"))
    assert prepend == ("/a", "/b")
    prepend = add_paths(prepend, parse_path_file("/c\n/a\n"))
    assert prepend == ("/b", "/c", "/a")
    assert build_path(prepend, "/usr/bin:/bin") == "/a:/c:/b:/usr/bin:/bin"
    assert build_path((), "/usr/bin") == "/usr/bin"
    assert build_path(("/x",), "") == "/x"
