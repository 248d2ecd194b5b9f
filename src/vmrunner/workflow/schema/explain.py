"""Why a workflow is not valid: jsonschema's errors turned into GitHub-like problems.

Runs only when the fast path (:mod:`.fast`) has said "not valid", so jsonschema is
imported only then. Errors are mapped back to the line and column of the offending
node, with GitHub's wording where there is one (``Unexpected value 'runn'``,
``Required property is missing: uses``, ``A sequence was not expected``). Where the
schema offers alternatives (``anyOf``), only the errors of the alternative the value
most nearly fits are reported, not one error per alternative.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft7Validator, validators
from jsonschema.exceptions import ValidationError

from vmrunner.workflow.loader import Node, Pos
from vmrunner.workflow.schema.document import load_schema
from vmrunner.workflow.schema.nodes import (
    PathItem,
    SchemaProblem,
    as_text,
    is_scalar,
    key_pos,
    node_at,
)


def _pattern(_v: Any, pattern: str, instance: Any, _schema: Any) -> Iterator[ValidationError]:
    if is_scalar(instance) and not re.search(pattern, as_text(instance)):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _min_length(_v: Any, size: int, instance: Any, _schema: Any) -> Iterator[ValidationError]:
    if is_scalar(instance) and len(as_text(instance)) < size:
        yield ValidationError(f"{instance!r} is too short")


@functools.cache
def validator() -> Any:
    """The compiled validator (built once; jsonschema validators are reusable)."""
    checker = Draft7Validator.TYPE_CHECKER.redefine("string", lambda _c, x: is_scalar(x))
    cls = validators.extend(
        Draft7Validator,
        validators={"pattern": _pattern, "minLength": _min_length},
        type_checker=checker,
    )
    return cls(load_schema())


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
        return [f"'{as_text(w)}'" for w in wanted]
    if kind == "enum":
        return [f"one of {len(wanted)} known values"]
    if kind == "const":
        return [f"'{as_text(wanted)}'"]
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
    return f"'{as_text(value)}'"


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


def explain(root: Node, data: Any) -> list[SchemaProblem]:
    """Every schema problem of ``root`` (whose plain data is ``data``), in file order,
    one per offending node."""
    found: dict[tuple[Pos, str], SchemaProblem] = {}
    for error in validator().iter_errors(data):
        for leaf in leaf_errors(error):
            if _owned_elsewhere(leaf):
                continue
            for problem in _problems(root, leaf):
                found.setdefault((problem.pos, problem.message), problem)
    return sorted(found.values(), key=lambda p: (p.pos.line, p.pos.col))
