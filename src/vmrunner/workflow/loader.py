"""Load workflow YAML into a tree in which every key and value knows its position.

The tree is built from ruamel.yaml's parser events, not from its constructor, so that
scalars are resolved by the YAML 1.2 core schema exactly as GitHub resolves them:

* ``on``, ``yes``, ``no``, ``y`` and ``off`` are strings (YAML 1.1 made them booleans);
* ``true``/``True``/``TRUE`` and ``false``/``False``/``FALSE`` are booleans;
* ``null``, ``Null``, ``NULL``, ``~`` and the empty scalar are null;
* integers are decimal, ``0o`` octal or ``0x`` hex; floats include ``.inf`` and ``.nan``;
  everything else (dates, ``1_000``, ``0b101``, ``3.10.1``) is a string;
* the explicit tags ``!!str``, ``!!int``, ``!!float``, ``!!bool``, ``!!null``, ``!!seq``
  and ``!!map`` (also written ``!<tag:yaml.org,2002:...>``) are honoured; a value that does
  not fit its tag, a quoted scalar with a non-string tag, and any other tag are errors.

Anchors and aliases are expanded (an alias shares the anchored node, positions and all);
``<<`` merge keys are not special (GitHub does not support them, so ``<<`` stays a plain
key that the schema then rejects). Duplicate keys, non-scalar keys, more than one
document, nesting deeper than :attr:`Limits.max_depth` and alias expansion beyond
:attr:`Limits.max_nodes` are errors.

Positions are 1-based lines and columns. ``load_text`` does no I/O; ``load_file`` only
reads the file.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml import events as ev
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from vmrunner.errors import UserInputError

Scalar = str | int | float | bool | None

_CORE = "tag:yaml.org,2002:"


@dataclass(frozen=True, slots=True, order=True)
class Pos:
    """A 1-based line and column in a file."""

    line: int
    col: int


class ScalarStyle(StrEnum):
    """How a scalar was written; the names are the ones GitHub's messages use."""

    PLAIN = "Plain"
    SINGLE_QUOTED = "SingleQuoted"
    DOUBLE_QUOTED = "DoubleQuoted"
    LITERAL = "Literal"
    FOLDED = "Folded"


_STYLES = {
    None: ScalarStyle.PLAIN,
    "": ScalarStyle.PLAIN,  # the C parser's way of saying plain
    "'": ScalarStyle.SINGLE_QUOTED,
    '"': ScalarStyle.DOUBLE_QUOTED,
    "|": ScalarStyle.LITERAL,
    ">": ScalarStyle.FOLDED,
}


@dataclass(frozen=True, slots=True, eq=False)
class ScalarNode:
    """A scalar: its resolved ``value``, its ``raw`` text (quotes removed) and position."""

    value: Scalar
    pos: Pos
    raw: str = ""
    style: ScalarStyle = ScalarStyle.PLAIN
    tag: str | None = None  # the explicit tag, if one was written

    @property
    def text(self) -> str:
        """The value as GitHub turns it into a string (``null`` is ``''``)."""
        if isinstance(self.value, str):
            return self.value
        if self.value is None:
            return ""
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        return self.raw


@dataclass(frozen=True, slots=True, eq=False)
class SequenceNode:
    """A sequence (``- a`` or ``[a, b]``)."""

    items: tuple[Node, ...]
    pos: Pos
    flow: bool = False


@dataclass(frozen=True, eq=False)
class MappingNode:
    """A mapping with its keys in file order. Keys are scalars, compared by their text."""

    pairs: tuple[tuple[ScalarNode, Node], ...]
    pos: Pos
    flow: bool = False
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {key.text: i for i, (key, _) in enumerate(self.pairs)}
        object.__setattr__(self, "_index", index)

    def get(self, key: str) -> Node | None:
        """The value under ``key``, or None when the key is absent (not when it is null)."""
        i = self._index.get(key)
        return None if i is None else self.pairs[i][1]

    def key_node(self, key: str) -> ScalarNode | None:
        """The key node itself (for its position), or None when absent."""
        i = self._index.get(key)
        return None if i is None else self.pairs[i][0]

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def keys(self) -> list[str]:
        """The keys' texts in file order."""
        return [key.text for key, _ in self.pairs]


Node = ScalarNode | SequenceNode | MappingNode


@dataclass(frozen=True, slots=True)
class YamlProblem:
    """One thing wrong with the YAML text, at a position."""

    pos: Pos
    message: str


class YamlError(UserInputError):
    """The text is not YAML that GitHub would accept. ``problems`` has at least one entry;
    ``str()`` gives one ``FILE:LINE:COL: message`` line per problem."""

    def __init__(self, filename: str, problems: list[YamlProblem]) -> None:
        self.filename = filename
        self.problems = tuple(problems)
        first = self.problems[0]
        self.line, self.col, self.message = first.pos.line, first.pos.col, first.message
        super().__init__(
            "\n".join(f"{filename}:{p.pos.line}:{p.pos.col}: {p.message}" for p in self.problems)
        )


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that keep loading (and everything after it) cheap on hostile input."""

    max_depth: int = 50  # nested collections, as GitHub counts them
    max_nodes: int = 250_000  # counted with aliases expanded


DEFAULT_LIMITS = Limits()

# The loader uses libyaml's C parser when ruamel.yaml.clib is installed (about ten times
# faster) and ruamel's pure-Python parser otherwise. Both only tokenise: resolution is
# ours. True forces the pure parser (the tests compare the two).
PURE_PARSER = False

_NULL = re.compile(r"(?:~|null|Null|NULL|)\Z")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?[0-9]+\Z")
_OCT = re.compile(r"0o[0-7]+\Z")
_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_INF = re.compile(r"([-+]?)\.(?:inf|Inf|INF)\Z")
_NAN = re.compile(r"\.(?:nan|NaN|NAN)\Z")


def _as_null(text: str) -> tuple[bool, Scalar]:
    return (True, None) if _NULL.match(text) else (False, None)


def _as_bool(text: str) -> tuple[bool, Scalar]:
    return (True, _BOOL[text]) if text in _BOOL else (False, None)


_MAX_INT_CHARS = 300  # beyond this a number is a float (inf), as GitHub's doubles are


def _as_int(text: str) -> tuple[bool, Scalar]:
    for pattern, skip, base in ((_INT, 0, 10), (_OCT, 2, 8), (_HEX, 2, 16)):
        if pattern.match(text):
            if len(text) > _MAX_INT_CHARS:
                return True, float("-inf" if text.startswith("-") else "inf")
            return True, int(text[skip:], base)
    return False, None


def _as_float(text: str) -> tuple[bool, Scalar]:
    if _FLOAT.match(text):
        return True, float(text)
    if m := _INF.match(text):
        return True, float(f"{m.group(1)}inf")
    if _NAN.match(text):
        return True, float("nan")
    return False, None


_TYPED = {"null": _as_null, "bool": _as_bool, "int": _as_int, "float": _as_float}


# The first characters a non-string plain scalar can start with (``~``, null, true,
# false, digits, signs, ``.5``, ``.inf``, ``.nan``); anything else is a string.
_TYPED_FIRST = frozenset("~nNtTfF0123456789+-.")


def resolve_plain(text: str) -> Scalar:
    """The YAML 1.2 core-schema value of an untagged plain scalar."""
    if text and text[0] not in _TYPED_FIRST:
        return text  # most scalars (words, commands): no pattern can match
    for kind in ("null", "bool", "int", "float"):
        ok, value = _TYPED[kind](text)
        if ok:
            return value
    return text


def _tag_message(tag: str, where: str) -> str:
    if tag.startswith(_CORE) and tag.removeprefix(_CORE) in (*_TYPED, "str", "seq", "map"):
        return f"The tag '{tag}' is not valid on {where}"
    return f"The tag '{tag}' is not supported (only the YAML core schema's tags are)"


def _event_pos(event: ev.Event) -> Pos:
    mark = event.start_mark
    return Pos(mark.line + 1, mark.column + 1)


@dataclass
class _Frame:
    """A collection being built."""

    is_map: bool
    pos: Pos
    flow: bool
    anchor: str | None
    items: list[Node] = field(default_factory=list)
    pairs: list[tuple[ScalarNode, Node]] = field(default_factory=list)
    key: ScalarNode | None = None
    seen: set[str] = field(default_factory=set)
    size: int = 1


class _Builder:
    """Turns the event stream into a tree, collecting recoverable problems."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Node, int]] = {}
        self.problems: list[YamlProblem] = []
        self.root: Node | None = None
        self.root_size = 0
        self.documents = 0
        self.last_mark: Any = None  # where the previous event ended

    def fatal(self, pos: Pos, message: str) -> YamlError:
        return YamlError("", [*self.problems, YamlProblem(pos, message)])

    def feed(self, event: ev.Event) -> None:
        if isinstance(event, ev.ScalarEvent):
            self.add(self.scalar(event), 1, event.anchor)
        elif isinstance(event, ev.CollectionStartEvent):
            self.start(event)
        elif isinstance(event, ev.CollectionEndEvent):
            self.end()
        elif isinstance(event, ev.AliasEvent):
            self.alias(event)
        elif isinstance(event, ev.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise self.fatal(_event_pos(event), "A workflow file must hold a single document")
        self.last_mark = event.end_mark

    def scalar(self, event: ev.ScalarEvent) -> ScalarNode:
        raw = event.value
        style = _STYLES.get(event.style, ScalarStyle.PLAIN)
        tag = event.tag
        pos = _event_pos(event)
        if raw == "" and style is ScalarStyle.PLAIN and tag is None:
            mark = self.last_mark
            return ScalarNode(None, Pos(mark.line + 1, mark.column + 1), raw, style, None)
        if tag is None:
            value = resolve_plain(raw) if style is ScalarStyle.PLAIN else raw
            return ScalarNode(value, pos, raw, style, None)
        return ScalarNode(self.tagged(raw, style, tag, pos), pos, raw, style, tag)

    def tagged(self, raw: str, style: ScalarStyle, tag: str, pos: Pos) -> Scalar:
        if tag in ("!", _CORE + "str"):
            return raw
        kind = tag.removeprefix(_CORE)
        if not tag.startswith(_CORE) or kind not in _TYPED:
            self.problems.append(YamlProblem(pos, _tag_message(tag, "a scalar")))
            return raw
        at = f"on line {pos.line} and column {pos.col}"
        if style is not ScalarStyle.PLAIN:
            self.problems.append(
                YamlProblem(
                    pos, f"The scalar style '{style}' {at} is not valid with the tag '{tag}'"
                )
            )
            return raw
        ok, value = _TYPED[kind](raw)
        if not ok:
            self.problems.append(
                YamlProblem(pos, f"The value '{raw}' {at} is invalid for the type '{tag}'")
            )
            return raw
        return value

    def alias(self, event: ev.AliasEvent) -> None:
        found = self.anchors.get(event.anchor)
        if found is None:
            raise self.fatal(_event_pos(event), f"The alias '*{event.anchor}' has no anchor")
        self.add(found[0], found[1], None)

    def start(self, event: ev.CollectionStartEvent) -> None:
        is_map = isinstance(event, ev.MappingStartEvent)
        pos = _event_pos(event)
        expected = _CORE + ("map" if is_map else "seq")
        if event.tag is not None and event.tag not in ("!", expected):
            where = "a mapping" if is_map else "a sequence"
            self.problems.append(YamlProblem(pos, _tag_message(event.tag, where)))
        if len(self.stack) >= self.limits.max_depth:
            raise self.fatal(pos, "Maximum object depth exceeded")
        self.stack.append(_Frame(is_map, pos, bool(event.flow_style), event.anchor))

    def end(self) -> None:
        frame = self.stack.pop()
        node: Node
        if frame.is_map:
            node = MappingNode(tuple(frame.pairs), frame.pos, frame.flow)
        else:
            node = SequenceNode(tuple(frame.items), frame.pos, frame.flow)
        self.add(node, frame.size, frame.anchor)

    def add(self, node: Node, size: int, anchor: str | None) -> None:
        if anchor is not None:
            self.anchors[anchor] = (node, size)
        if not self.stack:
            self.root, self.root_size = node, size
            return
        frame = self.stack[-1]
        frame.size += size
        if frame.size > self.limits.max_nodes:
            raise self.fatal(node.pos, "Maximum object size exceeded")
        if not frame.is_map:
            frame.items.append(node)
        elif frame.key is None:
            self.add_key(frame, node)
        else:
            frame.pairs.append((frame.key, node))
            frame.key = None

    def add_key(self, frame: _Frame, node: Node) -> None:
        if not isinstance(node, ScalarNode):
            self.problems.append(YamlProblem(node.pos, "A mapping key must be a scalar"))
            node = ScalarNode(
                f"<{type(node).__name__} at {node.pos.line}:{node.pos.col}>", node.pos
            )
        if node.text in frame.seen:
            self.problems.append(YamlProblem(node.pos, f"'{node.text}' is already defined"))
            node = ScalarNode(
                f"{node.text} (duplicate at {node.pos.line}:{node.pos.col})", node.pos
            )
        frame.seen.add(node.text)
        frame.key = node


def _offset_pos(text: str, offset: int) -> Pos:
    before = text[:offset]
    return Pos(before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1)


def _syntax_problem(text: str, exc: YAMLError) -> YamlProblem:
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        pos = Pos(mark.line + 1, mark.column + 1) if mark is not None else Pos(1, 1)
        parts = [str(p) for p in (exc.context, exc.problem) if p]
        return YamlProblem(pos, "YAML syntax error: " + ("; ".join(parts) or "invalid YAML"))
    if isinstance(exc, ReaderError):
        char = exc.character if isinstance(exc.character, int) else 0
        message = f"YAML syntax error: the character #x{char:04x} is not allowed"
        return YamlProblem(_offset_pos(text, exc.position), message)
    return YamlProblem(Pos(1, 1), f"YAML syntax error: {exc}")


def load_text(text: str, filename: str = "<string>", limits: Limits = DEFAULT_LIMITS) -> Node:
    """Parse ``text`` into a position-annotated tree.

    An empty document gives a null :class:`ScalarNode` at 1:1. Raises :class:`YamlError`
    (with every problem found, or the one syntax error that stopped parsing) when the
    text is not acceptable YAML. Does not check anything about workflows.
    """
    builder = _Builder(limits)
    parser = YAML(typ="safe", pure=PURE_PARSER)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for event in parser.parse(text):
                builder.feed(event)
    except YamlError as exc:
        raise YamlError(filename, list(exc.problems)) from None
    except YAMLError as exc:
        raise YamlError(filename, [*builder.problems, _syntax_problem(text, exc)]) from None
    if builder.problems:
        raise YamlError(filename, builder.problems)
    return builder.root if builder.root is not None else ScalarNode(None, Pos(1, 1))


def load_file(path: Path) -> Node:
    """Read ``path`` (UTF-8) and :func:`load_text` it, naming errors after the path.

    Raises :class:`YamlError` for bad YAML and for bytes that are not UTF-8; lets
    ``OSError`` from reading through.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        prefix = data[: exc.start].decode("utf-8", "replace")
        pos = _offset_pos(prefix, len(prefix))
        raise YamlError(str(path), [YamlProblem(pos, "The file is not valid UTF-8")]) from None
    return load_text(text, str(path))
