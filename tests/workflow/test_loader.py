"""Table tests for the workflow YAML loader: YAML 1.2 resolution, positions, errors."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import pytest

from vmrunner.workflow.loader import (
    Limits,
    MappingNode,
    Node,
    Pos,
    ScalarNode,
    ScalarStyle,
    SequenceNode,
    YamlError,
    load_file,
    load_text,
)


def plain(node: Node) -> Any:
    """The tree as plain Python data."""
    if isinstance(node, ScalarNode):
        return node.value
    if isinstance(node, SequenceNode):
        return [plain(i) for i in node.items]
    return {k.text: plain(v) for k, v in node.pairs}


def value_of(text: str) -> Any:
    root = load_text(f"v: {text}\n")
    assert isinstance(root, MappingNode)
    value = root.get("v")
    assert value is not None
    return plain(value)


# ---- YAML 1.2 core schema ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the YAML 1.1 booleans are strings in 1.2
        ("on", "on"),
        ("yes", "yes"),
        ("no", "no"),
        ("off", "off"),
        ("y", "y"),
        ("Yes", "Yes"),
        # the 1.2 booleans
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("False", False),
        ("FALSE", False),
        ("tRUE", "tRUE"),
        # null
        ("null", None),
        ("Null", None),
        ("NULL", None),
        ("~", None),
        ("", None),
        ("nULL", "nULL"),
        # integers: decimal, 0o octal, 0x hex; 1.1's forms are strings
        ("42", 42),
        ("-7", -7),
        ("+7", 7),
        ("0o17", 15),
        ("0x1F", 31),
        ("017", 17),
        ("0b101", "0b101"),
        ("1_000", "1_000"),
        ("1:20", "1:20"),
        # floats
        ("3.10", 3.1),
        ("1e3", 1000.0),
        ("-.5", -0.5),
        ("1.2E-2", 0.012),
        (".inf", math.inf),
        ("9" * 400, math.inf),  # GitHub's numbers are doubles
        ("-.Inf", -math.inf),
        # strings that other resolvers turn into something else
        ("2001-12-14", "2001-12-14"),
        ("3.10.1", "3.10.1"),
        ("1.2.3", "1.2.3"),
        ("0x", "0x"),
        ("'true'", "true"),
        ('"42"', "42"),
        ("ubuntu-latest", "ubuntu-latest"),
    ],
)
def test_plain_scalar_resolution(text: str, expected: Any) -> None:
    assert value_of(text) == expected
    assert type(value_of(text)) is type(expected)


def test_nan() -> None:
    assert math.isnan(value_of(".NaN"))


def test_on_is_a_key_not_true() -> None:
    root = load_text("on: push\nyes: 1\n")
    assert isinstance(root, MappingNode)
    assert root.keys() == ["on", "yes"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!!str 123", "123"),
        ("!!int 0x10", 16),
        ("!!float 1", 1.0),
        ("!!bool FALSE", False),
        ("!!null", None),
        ("!<tag:yaml.org,2002:bool> true", True),
        ("! 12", "12"),
        ("!!str", ""),
    ],
)
def test_explicit_tags(text: str, expected: Any) -> None:
    assert value_of(text) == expected
    assert type(value_of(text)) is type(expected)


def test_raw_text_and_style_are_kept() -> None:
    root = load_text("a: 3.10\nb: 'x'\nc: |\n  line\n")
    assert isinstance(root, MappingNode)
    a, b, c = (root.get(k) for k in "abc")
    assert isinstance(a, ScalarNode) and a.raw == "3.10" and a.text == "3.10"
    assert isinstance(b, ScalarNode) and b.style is ScalarStyle.SINGLE_QUOTED
    assert isinstance(c, ScalarNode) and c.style is ScalarStyle.LITERAL and c.value == "line\n"


@pytest.mark.parametrize(
    ("value", "text"), [(None, ""), (True, "true"), (False, "false"), ("x", "x")]
)
def test_scalar_text_is_github_string_form(value: Any, text: str) -> None:
    assert ScalarNode(value, Pos(1, 1), raw="whatever").text == text


# ---- positions ---------------------------------------------------------------------

WORKFLOW = """\
on: push
jobs:
  build:
    runs-on: [ubuntu-latest]
    steps:
      - run: echo hi
        env: {A: 1}
      - uses: |
          x
"""


def test_every_key_and_value_has_a_1_based_position() -> None:
    root = load_text(WORKFLOW)
    assert isinstance(root, MappingNode)
    assert root.pos == Pos(1, 1)
    jobs = root.get("jobs")
    assert isinstance(jobs, MappingNode) and jobs.pos == Pos(3, 3)
    key = jobs.key_node("build")
    assert key is not None and key.pos == Pos(3, 3)
    build = jobs.get("build")
    assert isinstance(build, MappingNode)
    runs_on = build.get("runs-on")
    assert isinstance(runs_on, SequenceNode) and runs_on.pos == Pos(4, 14) and runs_on.flow
    assert runs_on.items[0].pos == Pos(4, 15)
    steps = build.get("steps")
    assert isinstance(steps, SequenceNode) and steps.pos == Pos(6, 7)
    first, second = steps.items
    assert isinstance(first, MappingNode) and first.pos == Pos(6, 9)
    run = first.get("run")
    assert run is not None and run.pos == Pos(6, 14)
    env = first.get("env")
    assert isinstance(env, MappingNode) and env.pos == Pos(7, 14)
    assert isinstance(second, MappingNode)
    uses = second.get("uses")
    assert uses is not None and uses.pos == Pos(8, 15)  # the block indicator


def test_empty_value_is_null_near_its_key() -> None:
    root = load_text("on:\n  push:\njobs: {}\n")
    assert isinstance(root, MappingNode)
    on = root.get("on")
    assert isinstance(on, MappingNode)
    push = on.get("push")
    assert isinstance(push, ScalarNode) and push.value is None and push.pos.line == 2


def test_empty_document_is_null() -> None:
    assert plain(load_text("")) is None
    assert plain(load_text("# just a comment\n")) is None


def test_comment_before_document_marker() -> None:
    assert plain(load_text("# comment\n---\non: push\n")) == {"on": "push"}


# ---- anchors and aliases -----------------------------------------------------------


def test_aliases_share_the_anchored_node() -> None:
    root = load_text("a: &x [1, 2]\nb: *x\n")
    assert isinstance(root, MappingNode)
    assert root.get("a") is root.get("b")
    assert plain(root) == {"a": [1, 2], "b": [1, 2]}


def test_merge_key_is_an_ordinary_key() -> None:
    # GitHub does not support merge keys: `<<` stays a key (the schema rejects it).
    root = load_text("base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n")
    assert plain(root) == {"base": {"x": 1}, "derived": {"<<": {"x": 1}, "y": 2}}


def test_alias_bomb_is_bounded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    with pytest.raises(YamlError, match="Maximum object size exceeded"):
        load_text("\n".join(lines) + "\n")


# ---- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        ("on: push\njobs: {}\non: pull_request\n", 3, 1, "'on' is already defined"),
        ("a:\n  b: 1\n  b: 2\n", 3, 3, "'b' is already defined"),
        ("a: {x: 1, x: 2}\n", 1, 11, "'x' is already defined"),
        ("a: b: c\n", 1, 5, "YAML syntax error: mapping values are not allowed"),
        ("a:\n\tb: 1\n", 2, 1, "YAML syntax error"),
        ("a: 'abc\n", 2, 1, "YAML syntax error"),
        ("a: [1, 2\nb: 3\n", 2, 2, "YAML syntax error"),
        ("a:\n  b: 1\n c: 2\n", 3, 2, "YAML syntax error"),
        ("a: 1\n---\nb: 2\n", 2, 1, "A workflow file must hold a single document"),
        ("a: *nope\n", 1, 4, "The alias '*nope' has no anchor"),
        ("a: \x00\n", 1, 4, "the character #x0000 is not allowed"),
        ("? [a]\n: 1\n", 1, 3, "A mapping key must be a scalar"),
        ("a: !foo bar\n", 1, 4, "The tag '!foo' is not supported"),
        ("a: !!seq {b: 1}\n", 1, 4, "is not valid on a mapping"),
        (
            "a: !!bool test\n",
            1,
            4,
            "The value 'test' on line 1 and column 4 is invalid for the type "
            "'tag:yaml.org,2002:bool'",
        ),
        (
            'a: !!int "300"\n',
            1,
            4,
            "The scalar style 'DoubleQuoted' on line 1 and column 4 is not valid with the "
            "tag 'tag:yaml.org,2002:int'",
        ),
    ],
)
def test_errors_carry_file_line_col(text: str, line: int, col: int, message: str) -> None:
    with pytest.raises(YamlError) as info:
        load_text(text, "wf.yml")
    error = info.value
    assert (error.line, error.col) == (line, col)
    assert message in error.message
    assert str(error).startswith(f"wf.yml:{line}:{col}: ")


def test_all_recoverable_problems_are_reported_together() -> None:
    with pytest.raises(YamlError) as info:
        load_text("a: 1\na: 2\nb: !!int x\nb: 3\n")
    assert [(p.pos.line, p.pos.col) for p in info.value.problems] == [(2, 1), (3, 4), (4, 1)]
    assert len(str(info.value).splitlines()) == 3


def test_depth_limit() -> None:
    deep = "a: " + "[" * 10 + "]" * 10 + "\n"
    assert load_text(deep, limits=Limits(max_depth=11))
    with pytest.raises(YamlError, match="Maximum object depth exceeded"):
        load_text(deep, limits=Limits(max_depth=10))


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "ci.yml"
    path.write_bytes(b"\xef\xbb\xbfon: push\n")
    assert plain(load_file(path)) == {"on": "push"}
    path.write_bytes(b"on: push\njobs: \xff\n")
    with pytest.raises(YamlError) as info:
        load_file(path)
    assert str(info.value).startswith(f"{path}:2:7: ")


# ---- the C parser agrees with the pure-Python one ----------------------------------

HAVE_C = importlib.util.find_spec("_ruamel_yaml") is not None


def _dump(node: Node) -> Any:
    if isinstance(node, ScalarNode):
        return (node.pos, node.raw, node.style, node.tag, repr(node.value))
    if isinstance(node, SequenceNode):
        return (node.pos, [_dump(i) for i in node.items])
    return (node.pos, [(_dump(k), _dump(v)) for k, v in node.pairs])


@pytest.mark.skipif(not HAVE_C, reason="ruamel.yaml.clib (the C parser) is not installed")
def test_c_and_pure_parsers_build_the_same_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmrunner.workflow import loader

    texts = [WORKFLOW, "a: &x {k: [1, 2.5, ~, 'q', \"d\"]}\nb: *x\nc: >-\n  folded\n  text\n"]
    fast = [_dump(load_text(t)) for t in texts]
    monkeypatch.setattr(loader, "PURE_PARSER", True)
    assert [_dump(load_text(t)) for t in texts] == fast
