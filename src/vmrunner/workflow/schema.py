"""Validate a loaded workflow against SchemaStore's ``github-workflow`` JSON schema.

The schema is the one vendored in the installed ``check-jsonschema`` wheel, read with
:mod:`importlib.resources` and compiled once per process. Before use it is adjusted to
match what GitHub itself accepts (see :func:`apply_overlays`):

* a scalar is accepted wherever a string is (GitHub turns ``3.10``, ``true`` and null
  into strings when a string is expected), so ``name: 1`` is valid;
* ``oneOf`` is read as ``anyOf`` (with scalars coercible to strings, the branches of a
  ``oneOf`` can overlap), except for the step's own ``oneOf``, which is how ``uses`` and
  ``run`` are kept apart.

Errors are mapped back to the line and column of the offending node, with GitHub's
wording where there is one (``Unexpected value 'runn'``, ``Required property is
missing: uses``, ``A sequence was not expected``). Where the schema offers alternatives
(``anyOf``), only the errors of the alternative the value most nearly fits are reported,
not one error per alternative.

Pure: no I/O beyond reading the packaged schema once.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from jsonschema import Draft7Validator, validators
from jsonschema.exceptions import ValidationError

from vmrunner.workflow.loader import MappingNode, Node, Pos, ScalarNode, SequenceNode

SCHEMA_PACKAGE = "check_jsonschema"
SCHEMA_RESOURCE = "builtin_schemas/vendor/github-workflows.json"

PathItem = str | int


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    """One schema violation: where it is, what is wrong, and the path to the node."""

    pos: Pos
    message: str
    path: tuple[PathItem, ...]


def load_schema() -> dict[str, Any]:
    """The vendored schema with :func:`apply_overlays` applied (a fresh copy)."""
    text = resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_RESOURCE).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return apply_overlays(schema)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_scalar(_checker: Any, instance: Any) -> bool:
    return instance is None or isinstance(instance, str | int | float)


def _pattern(_v: Any, pattern: str, instance: Any, _schema: Any) -> Iterator[ValidationError]:
    if _is_scalar(None, instance) and not re.search(pattern, _text(instance)):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _min_length(_v: Any, size: int, instance: Any, _schema: Any) -> Iterator[ValidationError]:
    if _is_scalar(None, instance) and len(_text(instance)) < size:
        yield ValidationError(f"{instance!r} is too short")


@functools.cache
def _validator() -> Any:
    """The compiled validator (built once; jsonschema validators are reusable)."""
    checker = Draft7Validator.TYPE_CHECKER.redefine("string", _is_scalar)
    cls = validators.extend(
        Draft7Validator,
        validators={"pattern": _pattern, "minLength": _min_length},
        type_checker=checker,
    )
    return cls(load_schema())


def to_data(node: Node) -> Any:
    """The tree as plain JSON-like data (dicts, lists, scalars) for the validator."""
    if isinstance(node, ScalarNode):
        return node.value
    if isinstance(node, SequenceNode):
        return [to_data(item) for item in node.items]
    return {key.text: to_data(value) for key, value in node.pairs}


def node_at(root: Node, path: Iterable[PathItem]) -> Node:
    """The node at a JSON path, or the deepest node that exists along it."""
    node = root
    for item in path:
        child: Node | None = None
        if isinstance(node, MappingNode) and isinstance(item, str):
            child = node.get(item)
        elif isinstance(node, SequenceNode) and isinstance(item, int) and item < len(node.items):
            child = node.items[item]
        if child is None:
            return node
        node = child
    return node


def key_pos(root: Node, path: Sequence[PathItem], key: str) -> Pos:
    """The position of ``key`` in the mapping at ``path`` (the mapping's, if absent)."""
    node = node_at(root, path)
    if isinstance(node, MappingNode) and (key_node := node.key_node(key)) is not None:
        return key_node.pos
    return node.pos


# ---- choosing among alternatives -------------------------------------------------

_EXPRESSION_HINT = r"\$\{\{"


def _fits(error: ValidationError) -> bool:
    """False when ``error`` says the value has the wrong shape for its alternative."""
    if error.relative_path:
        return True
    if error.validator == "type":
        return False
    if error.validator in ("anyOf", "oneOf") and error.context:
        return any(all(_fits(e) for e in branch) for branch in _branches(error).values())
    return True


def _weak(errors: list[ValidationError]) -> bool:
    """True when the alternative only wanted a ``${{ }}`` expression (so a user who wrote
    a plain value more likely meant one of the other alternatives)."""
    return all(_weak_error(e) for e in errors)


def _weak_error(error: ValidationError) -> bool:
    if error.validator == "pattern":
        return _EXPRESSION_HINT in str(error.validator_value)
    if error.validator in ("anyOf", "oneOf") and error.context and not error.relative_path:
        fitting = [b for b in _branches(error).values() if all(_fits(e) for e in b)]
        return bool(fitting) and all(_weak(b) for b in fitting)
    return False


def _branches(error: ValidationError) -> dict[int, list[ValidationError]]:
    groups: dict[int, list[ValidationError]] = {}
    for sub in error.context or ():
        index = sub.relative_schema_path[0] if sub.relative_schema_path else 0
        groups.setdefault(int(index), []).append(sub)
    return groups


def _best_branch(error: ValidationError) -> list[ValidationError]:
    """The errors of the alternative the value most nearly fits."""

    def score(item: tuple[int, list[ValidationError]]) -> tuple[int, int, int, int, int]:
        index, errors = item
        misfit = 0 if all(_fits(e) for e in errors) else 1
        at_root = sum(1 for e in errors if not e.relative_path)
        return (misfit, int(_weak(errors)), at_root, len(errors), index)

    return min(_branches(error).items(), key=score)[1]


def _only_required(errors: list[ValidationError]) -> bool:
    return all(e.validator == "required" and not e.relative_path for e in errors)


def _expectations(error: ValidationError, nested: bool = False) -> list[str] | None:
    """What the value should have been, when ``error`` (and every alternative inside it)
    is about the value itself and can be said in a few words; else None."""
    if nested and error.relative_path:
        return None
    kind, wanted = error.validator, error.validator_value
    if kind == "type":
        return [
            _KINDS.get(str(w), str(w)) for w in (wanted if isinstance(wanted, list) else [wanted])
        ]
    if kind == "enum" and len(wanted) <= 12:
        return [f"'{_text(w)}'" for w in wanted]
    if kind == "enum":
        return [f"one of {len(wanted)} known values"]
    if kind == "const":
        return [f"'{_text(wanted)}'"]
    if kind == "pattern" and _EXPRESSION_HINT in str(wanted):
        return ["a ${{ }} expression"]
    if kind in ("anyOf", "oneOf") and error.context:
        found = [_expectations(e, nested=True) for e in error.context]
        if all(f is not None for f in found):
            return list(dict.fromkeys(x for f in found if f for x in f))
    return None


def leaf_errors(error: ValidationError) -> Iterator[ValidationError]:
    """Expand alternatives (anyOf/oneOf) into the errors of the best-fitting branch.

    The alternative error itself is kept (to be said in one message) when every
    alternative fails only for a missing key (a step with neither ``uses`` nor ``run``),
    or only because of what the value itself is (``timeout-minutes: soon`` is neither a
    number nor an expression).
    """
    if error.validator in ("anyOf", "oneOf") and error.context:
        branches = _branches(error)
        if len(branches) > 1 and (
            all(_only_required(b) for b in branches.values()) or _expectations(error)
        ):
            yield error
            return
        for sub in _best_branch(error):
            yield from leaf_errors(sub)
        return
    yield error


# ---- messages ------------------------------------------------------------------

_KINDS = {
    "object": "a mapping",
    "array": "a sequence",
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "a boolean",
    "null": "null",
}


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a sequence"
    return f"'{_text(value)}'"


def _unexpected(instance: Any, expected: list[str]) -> str:
    wanted = ", ".join(expected[:-1]) + " or " + expected[-1] if len(expected) > 1 else expected[0]
    if isinstance(instance, list | dict):
        shape = "sequence" if isinstance(instance, list) else "mapping"
        return f"A {shape} was not expected (expected {wanted})"
    return f"Unexpected value {_show(instance)} (expected {wanted})"


def _simple_message(error: ValidationError) -> str:
    """The message for an error about one value (not about keys of a mapping)."""
    kind, wanted = error.validator, error.validator_value
    if (expected := _expectations(error)) is not None:
        return _unexpected(error.instance, expected)
    if kind == "pattern" and "ya?ml" in str(wanted):
        return (
            f"Invalid workflow reference {_show(error.instance)}: expected "
            "'./.github/workflows/FILE.yml' or 'OWNER/REPO/.github/workflows/FILE.yml@REF'"
        )
    if kind == "pattern":
        return f"Unexpected value {_show(error.instance)} (must match {wanted})"
    if kind in ("minItems", "minProperties", "minLength"):
        if tuple(error.absolute_path) == ("jobs",):
            return "The workflow must contain at least one job"
        return f"At least {wanted} {'entry' if wanted == 1 else 'entries'} required here"
    if kind in ("anyOf", "oneOf"):
        instance = error.instance if isinstance(error.instance, dict) else {}
        if not error.context:  # more than one alternative matched
            subschemas = wanted if isinstance(wanted, list) else []
            keys = [
                k for sub in subschemas if isinstance(sub, dict) for k in sub.get("required", [])
            ]
            present = [k for k in dict.fromkeys(keys) if k in instance]
            return f"Only one of {', '.join(present)} may be given here"
        missing = [k for e in error.context for k in e.validator_value if k not in instance]
        return f"Required property is missing: one of {', '.join(dict.fromkeys(missing))}"
    return str(error.message)


def _extra_keys(error: ValidationError) -> list[str]:
    instance, schema = error.instance, error.schema
    if not isinstance(instance, dict) or not isinstance(schema, dict):
        return []
    known = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    return [k for k in instance if k not in known and not any(re.search(p, k) for p in patterns)]


def _problems(root: Node, error: ValidationError) -> Iterator[SchemaProblem]:
    path = tuple(error.absolute_path)
    kind = error.validator
    if kind == "additionalProperties":
        for key in _extra_keys(error):
            yield SchemaProblem(key_pos(root, path, key), f"Unexpected value '{key}'", (*path, key))
    elif kind == "required":
        present = error.instance if isinstance(error.instance, dict) else {}
        for key in error.validator_value:
            if key not in present:
                message = f"Required property is missing: {key}"
                yield SchemaProblem(node_at(root, path).pos, message, path)
    elif kind == "not" and isinstance(error.validator_value, dict):
        keys = list(error.validator_value.get("required", []))
        message = " and ".join(f"'{k}'" for k in keys) + " cannot be used together"
        yield SchemaProblem(key_pos(root, path, keys[-1] if keys else ""), message, path)
    elif kind == "dependencies":
        yield from _dependency_problems(root, error, path)
    else:
        yield SchemaProblem(node_at(root, path).pos, _simple_message(error), path)


def _dependency_problems(
    root: Node, error: ValidationError, path: tuple[PathItem, ...]
) -> Iterator[SchemaProblem]:
    instance = error.instance if isinstance(error.instance, dict) else {}
    for key, needed in dict(error.validator_value).items():
        missing = [n for n in needed if key in instance and n not in instance]
        for other in missing:
            message = f"'{key}' can only be used together with '{other}'"
            yield SchemaProblem(key_pos(root, path, key), message, path)


# Problems the semantic checks report in GitHub's words instead: (keyword, path), where
# "*" matches any key or index.
_OWNED_ELSEWHERE = (
    ("additionalProperties", ("jobs",)),  # job ids
    ("minItems", ("jobs", "*", "strategy", "matrix", "*")),  # empty matrix vectors
)


def _owned_elsewhere(error: ValidationError) -> bool:
    path = tuple(error.absolute_path)
    return any(
        error.validator == keyword
        and len(pattern) == len(path)
        and all(p in ("*", item) for p, item in zip(pattern, path, strict=True))
        for keyword, pattern in _OWNED_ELSEWHERE
    )


def validate_schema(root: Node) -> list[SchemaProblem]:
    """Every schema problem of the tree, in file order, one per offending node.

    Does not check anything the schema cannot express (``needs`` cycles, expression
    syntax, ids): see :mod:`vmrunner.workflow.validate`.
    """
    data = to_data(root)
    if fast_is_valid(data):
        return []
    found: dict[tuple[Pos, str], SchemaProblem] = {}
    for error in _validator().iter_errors(data):
        for leaf in leaf_errors(error):
            if _owned_elsewhere(leaf):
                continue
            for problem in _problems(root, leaf):
                found.setdefault((problem.pos, problem.message), problem)
    return sorted(found.values(), key=lambda p: (p.pos.line, p.pos.col))


# ---- the fast path ---------------------------------------------------------------
# Most workflows are valid, and jsonschema spends ~5 ms finding that out for a typical
# file. This compiles the (fixed, small) keyword subset the schema uses into closures
# that answer only "valid or not", about ten times faster; jsonschema runs only when the
# answer is "not", to say why. tests/workflow/test_schema.py checks that both agree.

Check = Callable[[Any], bool]


def _equal(one: Any, two: Any) -> bool:
    if isinstance(one, bool) or isinstance(two, bool):
        return one is two
    return bool(one == two)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


_TYPES: dict[str, Check] = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": lambda x: _is_scalar(None, x),
    "number": _is_number,
    "integer": lambda x: (
        (isinstance(x, int) and not isinstance(x, bool))
        or (isinstance(x, float) and x.is_integer())
    ),
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
}


class _Compiler:
    """Compiles a draft-07 schema (the keywords this schema uses) into a predicate."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}

    def compile(self, schema: Any) -> Check:
        if schema is True or schema == {}:
            return lambda _x: True
        if schema is False:
            return lambda _x: False
        checks: list[Check] = []
        for key, value in schema.items():
            keyword = getattr(self, "k_" + key.replace("$", "_"), None)
            if keyword is not None:  # unknown keywords are annotations
                checks.append(keyword(value, schema))
        if len(checks) == 1:
            return checks[0]
        return lambda x: all(check(x) for check in checks)

    def k__ref(self, ref: str, _schema: Any) -> Check:
        if ref not in self.refs:
            target: Any = self.root
            for part in ref.removeprefix("#/").split("/"):
                target = target[part]
            slot: list[Check] = []
            self.refs[ref] = lambda x: slot[0](x)
            slot.append(self.compile(target))
        return self.refs[ref]

    def k_type(self, names: Any, _schema: Any) -> Check:
        preds = [_TYPES[n] for n in (names if isinstance(names, list) else [names])]
        return lambda x: any(p(x) for p in preds)

    def k_properties(self, props: dict[str, Any], schema: Any) -> Check:
        if "patternProperties" in schema or "additionalProperties" in schema:
            return lambda _x: True  # handled together by k_additionalProperties
        checks = {k: self.compile(v) for k, v in props.items()}
        return lambda x: (
            not isinstance(x, dict) or all(checks[k](v) for k, v in x.items() if k in checks)
        )

    def k_patternProperties(self, _p: Any, schema: Any) -> Check:
        if "additionalProperties" in schema:
            return lambda _x: True
        return self.k_additionalProperties(True, schema)

    def k_additionalProperties(self, extra: Any, schema: Any) -> Check:
        props = {k: self.compile(v) for k, v in schema.get("properties", {}).items()}
        patterns = [(re.compile(p), self.compile(v))
                    for p, v in schema.get("patternProperties", {}).items()]  # fmt: skip
        other = self.compile(extra)

        def check_key(key: str, value: Any) -> bool:
            matched = False
            for pattern, check in patterns:
                if pattern.search(key):
                    matched = True
                    if not check(value):
                        return False
            if key in props:
                return props[key](value)
            return matched or other(value)

        return lambda x: not isinstance(x, dict) or all(check_key(k, v) for k, v in x.items())

    def k_items(self, items: Any, _schema: Any) -> Check:
        check = self.compile(items)
        return lambda x: not isinstance(x, list) or all(check(i) for i in x)

    def k_required(self, keys: list[str], _schema: Any) -> Check:
        return lambda x: not isinstance(x, dict) or all(k in x for k in keys)

    def k_enum(self, options: list[Any], _schema: Any) -> Check:
        return lambda x: any(_equal(x, o) for o in options)

    def k_const(self, value: Any, _schema: Any) -> Check:
        return lambda x: _equal(x, value)

    def k_anyOf(self, subs: list[Any], _schema: Any) -> Check:
        checks = [self.compile(s) for s in subs]
        return lambda x: any(c(x) for c in checks)

    def k_oneOf(self, subs: list[Any], _schema: Any) -> Check:
        checks = [self.compile(s) for s in subs]
        return lambda x: sum(1 for c in checks if c(x)) == 1

    def k_allOf(self, subs: list[Any], _schema: Any) -> Check:
        checks = [self.compile(s) for s in subs]
        return lambda x: all(c(x) for c in checks)

    def k_not(self, sub: Any, _schema: Any) -> Check:
        check = self.compile(sub)
        return lambda x: not check(x)

    def k_minItems(self, size: int, _schema: Any) -> Check:
        return lambda x: not isinstance(x, list) or len(x) >= size

    def k_minProperties(self, size: int, _schema: Any) -> Check:
        return lambda x: not isinstance(x, dict) or len(x) >= size

    def k_minLength(self, size: int, _schema: Any) -> Check:
        return lambda x: not _is_scalar(None, x) or len(_text(x)) >= size

    def k_pattern(self, pattern: str, _schema: Any) -> Check:
        compiled = re.compile(pattern)
        return lambda x: not _is_scalar(None, x) or compiled.search(_text(x)) is not None

    def k_dependencies(self, deps: dict[str, list[str]], _schema: Any) -> Check:
        return lambda x: (
            not isinstance(x, dict)
            or all(all(d in x for d in needed) for key, needed in deps.items() if key in x)
        )


@functools.cache
def _fast_check() -> Check:
    schema = load_schema()
    check: Check = _Compiler(schema).compile(schema)
    return check


def fast_is_valid(data: Any) -> bool:
    """Whether ``data`` is valid, by the compiled fast path (same verdict as jsonschema)."""
    return _fast_check()(data)


# ---- overlays: where SchemaStore's schema and GitHub disagree ---------------------

_EXPRESSION = {"$ref": "#/definitions/expressionSyntax"}
_ANNOTATIONS = {"$comment", "description", "default", "markdownDescription", "examples"}


def _normalise(node: Any, in_step: bool = False) -> Any:
    """Make the schema mean what its authors meant, recursively (returns the new node).

    * ``oneOf`` becomes ``anyOf``, except the step's own ``oneOf`` (``uses`` vs ``run``);
    * keywords beside a ``$ref`` (which draft-07 ignores, so event ``types`` and
      ``workflow_dispatch`` inputs would go unchecked) are kept, beside it in an ``allOf``;
    * annotations (descriptions, comments, defaults) are dropped.
    """
    if isinstance(node, list):
        return [_normalise(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key in _ANNOTATIONS and not isinstance(value, dict | list):
            continue
        key = "anyOf" if key == "oneOf" and not in_step else key
        out[key] = _normalise(value, in_step=key == "step")
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}, out]}
    return out


def apply_overlays(schema: dict[str, Any]) -> dict[str, Any]:
    """Adjust the schema to what GitHub's own parser accepts; returns the new schema.

    Each change is backed by a case in GitHub's workflow-parser conformance suite or by
    real workflows that GitHub runs (the corpus). Does not loosen anything else.
    """
    defs = schema["definitions"]
    events = schema["properties"]["on"]["oneOf"][2]["properties"]
    # Null is a value: matrix entries (yaml-schema-null) and env values (coercion-to-string).
    defs["configuration"]["oneOf"].append({"type": "null"})
    defs["env"]["oneOf"][0]["additionalProperties"]["oneOf"].append({"type": "null"})
    # workflow_dispatch ignores unknown keys (on-workflow_dispatch-unknown-keys-ignored); an
    # input may be null and its type defaults to string (on-workflow_dispatch-inputs).
    events["workflow_dispatch"]["oneOf"][1].pop("additionalProperties", None)
    dispatch_input = defs["workflowDispatchInput"]
    dispatch_input["type"] = ["object", "null"]
    dispatch_input["oneOf"] += [{"type": "null"}, {"type": "object", "not": {"required": ["type"]}}]
    # A declared workflow_call secret may be null (reusable-workflow-job-basic).
    call = events["workflow_call"]["oneOf"][1]["properties"]
    call["secrets"]["patternProperties"]["^[_a-zA-Z][a-zA-Z0-9_-]*$"]["type"] = ["object", "null"]
    # Jobs may set cancel-timeout-minutes (job-cancel-timeout-minutes).
    defs["normalJob"]["properties"]["cancel-timeout-minutes"] = {
        "oneOf": [{"type": "number"}, _EXPRESSION]
    }
    # `strategy:` needs no matrix (fail-fast or max-parallel alone; real workflows do it).
    for job in ("normalJob", "reusableWorkflowCallJob"):
        defs[job]["properties"]["strategy"].pop("required", None)
    # A snapshot may carry an `if` and a wildcard version like 1.* (job-snapshot-mapping).
    snapshot = defs["snapshot"]["oneOf"][1]
    snapshot["properties"]["if"] = {"type": ["boolean", "number", "string"]}
    snapshot["properties"]["version"] = {"type": "string", "pattern": r"^\d+(\.(\d+|\*))*$"}
    # The image_version event (on-event-config-image-version-*).
    events["image_version"] = {
        "oneOf": [
            {"type": "null"},
            {
                "type": "object",
                "properties": {"names": {}, "versions": {}, "types": {}},
                "additionalProperties": False,
            },
        ]
    }
    # Container credentials have exactly two keys (job-container-invalid-credentials).
    for name in ("jobContainer", "serviceContainer"):
        defs[name]["properties"]["credentials"]["additionalProperties"] = False
    normalised: dict[str, Any] = _normalise(schema)
    return normalised
