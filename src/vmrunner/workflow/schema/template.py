"""GitHub's workflow template schema (``workflow-v1.0.json``) and a reader that checks a
loaded workflow against it the way GitHub's own parser does.

The schema is vendored unchanged from the npm package ``@actions/workflow-parser``
(MIT, see ``LICENSE-workflow-v1.0`` beside it; tests/workflow/test_template_schema.py
checks it equals the package's copy). It is not a JSON schema: each definition is one
of ``null``, ``boolean``, ``number``, ``string`` (optionally a constant or non-empty),
``sequence`` (of an item type), ``mapping`` (known properties, some required, and/or
loose keys of one value type), ``one-of`` (alternatives) or ``allowed-values``
(constant strings). A definition may list a ``context``: where it, or anything under
it, allows ``${{ }}`` expressions. An expression stands for a value of any type.

:func:`read_template` is a port of the TypeScript parser's ``TemplateReader``: the same
walk, the same choice among alternatives (a mapping's keys narrow the mapping
definitions it may be), the same messages at the same nodes. Two things are added:
an unknown key gets a "did you mean" when a known key is close, and a required key
that the misspelling was meant to be is then not also reported missing.
"""

from __future__ import annotations

import difflib
import functools
import json
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

from vmrunner.workflow.loader import MappingNode, Node, Pos, ScalarNode, SequenceNode
from vmrunner.workflow.schema.nodes import PathItem, SchemaProblem

SCHEMA_FILE = "workflow-v1.0.json"
ROOT = "workflow-root-strict"  # what GitHub's parser reads a workflow file as
_SCALARS = ("null", "boolean", "number", "string")
_BACKGROUND_ONLY = frozenset({"wait", "wait-all", "cancel"})
_BACKGROUND = _BACKGROUND_ONLY | {"background"}
NOT_ALLOWED = "A template expression is not allowed in this context"


@dataclass(frozen=True)
class Property:
    type: str
    required: bool = False


@dataclass(frozen=True)
class Definition:
    """One definition of the template schema (``kind`` is ``one-of`` for allowed-values)."""

    name: str
    kind: str
    context: tuple[str, ...] = ()
    constant: str | None = None
    non_empty: bool = False
    item_type: str = "any"
    properties: dict[str, Property] = field(default_factory=dict)
    loose_key: str | None = None
    loose_value: str | None = None
    one_of: tuple[str, ...] = ()


def _property(value: Any) -> Property:
    if isinstance(value, str):
        return Property(value)
    return Property(str(value["type"]), bool(value.get("required", False)))


def _definition(name: str, raw: dict[str, Any]) -> list[Definition]:
    """The definition ``raw`` (and, for allowed-values, one constant string per value)."""
    context = tuple(raw.get("context", ()))
    if "allowed-values" in raw:
        names = [f"{name}-{v}" for v in raw["allowed-values"]]
        constants = [Definition(n, "string", constant=v)
                     for n, v in zip(names, raw["allowed-values"], strict=True)]  # fmt: skip
        return [Definition(name, "one-of", context, one_of=tuple(names)), *constants]
    if "one-of" in raw:
        return [Definition(name, "one-of", context, one_of=tuple(raw["one-of"]))]
    if "sequence" in raw:
        return [Definition(name, "sequence", context, item_type=raw["sequence"]["item-type"])]
    if "mapping" in raw:
        m = raw["mapping"]
        props = {k: _property(v) for k, v in m.get("properties", {}).items()}
        loose = (m.get("loose-key-type"), m.get("loose-value-type"))
        return [Definition(name, "mapping", context, properties=props,
                           loose_key=loose[0], loose_value=loose[1])]  # fmt: skip
    if "string" in raw:
        s = raw["string"]
        non_empty = bool(s.get("require-non-empty", False))
        return [Definition(name, "string", context, s.get("constant"), non_empty)]
    for kind in _SCALARS:
        if kind in raw:
            return [Definition(name, kind, context)]
    return []


_BUILTIN = {
    "null": Definition("null", "null"),
    "boolean": Definition("boolean", "boolean"),
    "number": Definition("number", "number"),
    "string": Definition("string", "string"),
    "sequence": Definition("sequence", "sequence", item_type="any"),
    "mapping": Definition("mapping", "mapping", loose_key="string", loose_value="any"),
    "any": Definition(
        "any", "one-of", one_of=("null", "boolean", "number", "string", "sequence", "mapping")
    ),  # fmt: skip
    "non-empty-string": Definition("non-empty-string", "string", non_empty=True),
    "sequence-of-non-empty-string": Definition(
        "sequence-of-non-empty-string", "sequence", item_type="non-empty-string"
    ),
}


def schema_text() -> str:
    """The vendored schema's text."""
    package = __name__.rpartition(".")[0]
    return resources.files(package).joinpath(SCHEMA_FILE).read_text("utf-8")


def _server_overlays(found: dict[str, Definition]) -> None:
    """Where GitHub's server (its C# parser, which decides whether a workflow runs) is
    looser than the TypeScript parser this schema ships with. Each is a conformance case
    that the TypeScript parser skips (tests/data/conformance/workflow-parser-skipped-tests.txt)
    and the differential test lists as a known disagreement:

    * keys under ``workflow_dispatch`` other than ``inputs`` are ignored
      (on-workflow_dispatch-unknown-keys-ignored);
    * a ``workflow_dispatch`` input may be null: a string input (on-workflow_dispatch-inputs).
    """
    dispatch = found["workflow-dispatch-mapping"]
    found[dispatch.name] = replace(dispatch, loose_key="string", loose_value="any")
    found["workflow-dispatch-input-or-null"] = Definition(
        "workflow-dispatch-input-or-null", "one-of", one_of=("null", "workflow-dispatch-input")
    )
    inputs = found["workflow-dispatch-inputs"]
    found[inputs.name] = replace(inputs, loose_value="workflow-dispatch-input-or-null")


@functools.cache
def definitions() -> dict[str, Definition]:
    """Every definition by name (built-ins first, the file's own win, then the server's
    overlays), read once."""
    found = dict(_BUILTIN)
    for name, raw in json.loads(schema_text())["definitions"].items():
        for definition in _definition(name, raw):
            found[definition.name] = definition
    _server_overlays(found)
    return found


@functools.cache
def of_kind(name: str, kind: str) -> tuple[Definition, ...]:
    """The definitions of ``kind`` that ``name`` may be: itself, or its one-of members
    (one level, as GitHub expands them)."""
    defs = definitions()
    definition = defs[name]
    if definition.kind == kind:
        return (definition,)
    if definition.kind != "one-of":
        return ()
    return tuple(defs[n] for n in definition.one_of if defs[n].kind == kind)


@functools.cache
def scalars(name: str) -> tuple[Definition, ...]:
    """The scalar definitions ``name`` may be (one-of expanded recursively)."""
    definition = definitions()[name]
    if definition.kind in _SCALARS:
        return (definition,)
    if definition.kind == "one-of":
        return tuple(s for n in definition.one_of for s in scalars(n))
    return ()


def _matches(definition: Definition, value: Any) -> bool:
    kind = definition.kind
    if kind == "string":
        if not isinstance(value, str):
            return False
        if definition.constant is not None:
            return value == definition.constant
        return bool(value) or not definition.non_empty
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    return isinstance(value, int | float) and not isinstance(value, bool)  # number


def _as_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def is_expression(value: Any) -> bool:
    """Whether a scalar is read as an expression (it holds a closed ``${{ }}``)."""
    if not isinstance(value, str):
        return False
    start = value.find("${{")
    return start >= 0 and value.find("}}", start + 3) >= 0


def _is_insert(value: str) -> bool:
    text = value.strip()
    return text.startswith("${{") and text.endswith("}}") and text[3:-2].strip() == "insert"


# ---- the reader ----------------------------------------------------------------------


@dataclass
class _Reader:
    """One walk over a tree; ``problems`` collects what GitHub's parser would report."""

    problems: list[SchemaProblem] = field(default_factory=list)

    def error(self, pos: Pos, message: str, path: tuple[PathItem, ...]) -> None:
        self.problems.append(SchemaProblem(pos, message, path))

    def read(self, node: Node, name: str, exprs: bool, path: tuple[PathItem, ...]) -> None:
        """Check ``node`` (at ``path``) against definition ``name``; ``exprs`` says whether
        an enclosing definition allows expressions."""
        exprs = exprs or bool(definitions()[name].context)
        if isinstance(node, ScalarNode):
            self.scalar(node, name, exprs, path)
        elif isinstance(node, SequenceNode):
            self.sequence(node, name, exprs, path)
        else:
            self.mapping(node, name, exprs, path)

    def scalar(self, node: ScalarNode, name: str, exprs: bool, path: tuple[PathItem, ...]) -> None:
        value = node.value
        if is_expression(value):
            if _is_insert(str(value)):
                self.error(node.pos, f"Unexpected value '{value}'", path)
            elif not exprs:
                self.error(node.pos, NOT_ALLOWED, path)
            return
        candidates = scalars(name)
        if any(_matches(d, value) for d in candidates):
            return
        if not isinstance(value, str) and any(_matches(d, _as_string(value)) for d in candidates):
            return
        self.error(node.pos, f"Unexpected value '{_as_string(value)}'", path)

    def sequence(
        self, node: SequenceNode, name: str, exprs: bool, path: tuple[PathItem, ...]
    ) -> None:
        found = of_kind(name, "sequence")
        if not found:
            self.error(node.pos, "A sequence was not expected", path)
            return
        for index, item in enumerate(node.items):
            self.read(item, found[0].item_type, exprs, (*path, index))

    def mapping(
        self, node: MappingNode, name: str, exprs: bool, path: tuple[PathItem, ...]
    ) -> None:
        found = of_kind(name, "mapping")
        if not found:
            self.error(node.pos, "A mapping was not expected", path)
        elif len(found) == 1 and not found[0].properties and found[0].loose_key:
            self.loose(node, found[0], exprs, path)
        else:
            self.known(node, list(found), exprs, path)

    def expression_key(
        self, key: ScalarNode, value: Node, value_type: str, exprs: bool, path: tuple[PathItem, ...]
    ) -> bool:
        """Reads a pair whose key is an expression (``${{ insert }}``, say); False when
        the key is not one."""
        if not is_expression(key.value):
            return False
        if exprs:
            self.read(value, value_type, exprs, (*path, key.text))
        else:
            self.error(key.pos, NOT_ALLOWED, path)
        return True

    def loose(
        self, node: MappingNode, definition: Definition, exprs: bool, path: tuple[PathItem, ...]
    ) -> None:
        assert definition.loose_key is not None and definition.loose_value is not None
        for key, value in node.pairs:
            if self.expression_key(key, value, definition.loose_value, exprs, path):
                continue
            self.scalar(key, definition.loose_key, exprs, path)
            self.read(value, definition.loose_value, exprs, (*path, key.text))

    def known(
        self, node: MappingNode, found: list[Definition], exprs: bool, path: tuple[PathItem, ...]
    ) -> None:
        first = found[0]
        seen: set[str] = set()
        meant: set[str] = set()  # known keys that a misspelled key was suggested as
        has_expression_key = False
        for key, value in node.pairs:
            if self.expression_key(key, value, "any", exprs, path):
                has_expression_key = True
                continue
            text = key.text
            seen.add(text.upper())
            prop = _match_and_filter(found, text)
            if prop is not None and text in _BACKGROUND:
                self.error(key.pos, f"Unexpected value '{text}'", path)
            elif prop is not None:
                self.read(value, prop.type, exprs, (*path, text))
            elif first.loose_key and first.loose_value:
                self.scalar(key, first.loose_key, exprs, path)
                self.read(value, first.loose_value, exprs, (*path, text))
            else:
                meant |= self.unexpected(key, found, path)
        self.finish(node, found, seen, meant, has_expression_key, path)

    def unexpected(
        self, key: ScalarNode, found: list[Definition], path: tuple[PathItem, ...]
    ) -> set[str]:
        """Reports an unknown key, with the known key it most likely meant."""
        known = sorted({p for d in found for p in d.properties if p not in _BACKGROUND})
        close = difflib.get_close_matches(key.text, known, n=1, cutoff=0.75)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        self.error(key.pos, f"Unexpected value '{key.text}'{hint}", path)
        return set(close)

    def finish(
        self,
        node: MappingNode,
        found: list[Definition],
        seen: set[str],
        meant: set[str],
        has_expression_key: bool,
        path: tuple[PathItem, ...],
    ) -> None:
        """The checks after all keys are read: one definition must be left, and its
        required keys given (a key a misspelling was meant as is not reported again)."""
        if len(found) > 1:
            if meant:
                return  # the misspelled key is the one that would have told them apart
            counts: dict[str, int] = {}
            for definition in found:
                for key in definition.properties:
                    counts[key] = counts.get(key, 0) + 1
            names = sorted(p for p, n in counts.items() if n == 1 and p not in _BACKGROUND_ONLY)
            message = (
                "There's not enough info to determine what you meant. "
                f"Add one of these properties: {', '.join(names)}"
            )
            self.error(node.pos, message, path)
        elif found and not has_expression_key:
            for prop_name, prop in found[0].properties.items():
                if prop.required and prop_name.upper() not in seen and prop_name not in meant:
                    self.error(node.pos, f"Required property is missing: {prop_name}", path)


def _match_and_filter(found: list[Definition], key: str) -> Property | None:
    """The property ``key`` names in any of ``found``; when some lack it, they are
    dropped from ``found`` (in place), as GitHub narrows a one-of of mappings."""
    result = None
    missing = False
    for definition in found:
        prop = definition.properties.get(key)
        if prop is not None:
            result = prop
        else:
            missing = True
    if result is not None and missing:
        found[:] = [d for d in found if key in d.properties]
    return result


def read_template(root: Node, name: str = ROOT) -> list[SchemaProblem]:
    """Every problem GitHub's parser reports for ``root`` read as definition ``name``, in
    file order (the reader's own order among problems at the same position)."""
    reader = _Reader()
    reader.read(root, name, False, ())
    return sorted(reader.problems, key=lambda p: (p.pos.line, p.pos.col))
