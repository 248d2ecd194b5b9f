"""Hypothesis strategies for workflows generated from GitHub's template schema, and
mutations of them (misspelled keys, wrong types, bad expressions).

A generated workflow is plain data (dicts, lists, scalars) following the schema's
definitions from ``workflow-root-strict`` down, dumped as block YAML so that every node
has a line of its own. Generation stops descending at a fixed depth (a scalar or an
empty collection is chosen there), so examples stay small.
"""

from __future__ import annotations

import functools
import io
from typing import Any

from hypothesis import strategies as st
from ruamel.yaml import YAML

from vmrunner.workflow.schema.template import ROOT, Definition, definitions

MAX_DEPTH = 5
WORDS = ["a", "build", "x-1", "ubuntu-latest", "main", "v1", "3.10", ""]
EXPRESSIONS = ["${{ github.sha }}", "${{ matrix.os }}", "a-${{ inputs.x }}", "${{ 1 }}"]
BAD_EXPRESSIONS = ["${{ github. }}", "${{ foo.bar }}", "${{ insert }}", "x ${{ 'a' ", "${{ }}"]
JOB_IDS = ["build", "test_1", "deploy"]
# Properties whose strings follow a format the schema does not state.
FORMATS = {
    "uses": ["./.github/workflows/w.yml", "o/r/.github/workflows/w.yml@v1", "actions/checkout@v4"],
    "needs": JOB_IDS,
}


def _string(definition: Definition, exprs: bool) -> st.SearchStrategy[Any]:
    if definition.constant is not None:
        return st.just(definition.constant)
    words = [w for w in WORDS if w or not definition.non_empty]
    return st.sampled_from(words + (EXPRESSIONS if exprs else []))


def _scalar(definition: Definition, exprs: bool) -> st.SearchStrategy[Any]:
    if definition.kind == "string":
        return _string(definition, exprs)
    if definition.kind == "number":
        return st.sampled_from([0, 5, 2.5])
    if definition.kind == "boolean":
        return st.booleans()
    return st.none()


def _mapping(definition: Definition, depth: int, exprs: bool) -> st.SearchStrategy[Any]:
    props = definition.properties
    required = sorted(k for k, p in props.items() if p.required)
    optional = sorted(k for k, p in props.items() if not p.required)

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        chosen = required + draw(st.lists(st.sampled_from(optional), max_size=3, unique=True)) \
            if optional else list(required)  # fmt: skip
        out = {
            k: draw(
                st.sampled_from(FORMATS[k])
                if k in FORMATS
                else value(props[k].type, depth + 1, exprs)
            )
            for k in chosen
        }
        if definition.loose_key and definition.loose_value:
            names = JOB_IDS if definition.loose_value == "job" else ["A", "b_c", "name"]
            for key in draw(st.lists(st.sampled_from(names), max_size=2, unique=True)):
                out.setdefault(key, draw(value(definition.loose_value, depth + 1, exprs)))
        return out

    return build()


@functools.cache
def value(name: str, depth: int = 0, exprs: bool = False) -> st.SearchStrategy[Any]:
    """Data that the definition ``name`` accepts (mostly: generated strings may still
    break rules the schema does not state)."""
    definition = definitions()[name]
    exprs = exprs or bool(definition.context)
    kind = definition.kind
    if kind == "one-of":
        members = list(definition.one_of)
        if depth >= MAX_DEPTH:
            members = [m for m in members if definitions()[m].kind not in ("mapping", "sequence",
                                                                           "one-of")] or members[:1]  # fmt: skip
        return st.one_of([value(m, depth, exprs) for m in members])
    if kind == "sequence":
        size = 0 if depth >= MAX_DEPTH else 2
        return st.lists(value(definition.item_type, depth + 1, exprs), max_size=size)
    if kind == "mapping":
        if depth >= MAX_DEPTH and not any(p.required for p in definition.properties.values()):
            return st.just({})
        return _mapping(definition, depth, exprs)
    return _scalar(definition, exprs)


def _paths(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path]
    if isinstance(data, dict):
        for k, v in data.items():
            found += _paths(v, (*path, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found += _paths(v, (*path, i))
    return found


def _misspell(key: str, how: int) -> str:
    if len(key) < 2:
        return key + "x"
    return [key[:-1], key + key[-1], key[1:] + key[0], key.upper()][how % 4]


@st.composite
def mutated(draw: st.DrawFn, data: Any) -> Any:
    """``data`` with one mutation at a drawn node: a misspelled key, a value of the
    wrong type, or a bad expression."""
    target = draw(st.sampled_from(_paths(data)[1:] or [()]))
    if not target:
        return data
    parent = data
    for item in target[:-1]:
        parent = parent[item]
    last = target[-1]
    kind = draw(st.sampled_from(["misspell", "type", "expression"]))
    if kind == "misspell" and isinstance(last, str):
        new_key = _misspell(last, draw(st.integers(0, 3)))
        if new_key not in parent:
            parent[new_key] = parent.pop(last)
    elif kind == "type":
        old = parent[last]
        parent[last] = draw(st.sampled_from([["x"], {"k": 1}, "text", 7]).filter(
            lambda new: type(new) is not type(old)))  # fmt: skip
    else:
        parent[last] = draw(st.sampled_from(BAD_EXPRESSIONS))
    return data


@st.composite
def workflows(draw: st.DrawFn) -> str:
    """A workflow's YAML text: generated from the schema, mutated half the time."""
    data = draw(value(ROOT))
    if draw(st.booleans()):
        data = draw(mutated(data))
    out = io.StringIO()
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.dump(data, out)
    return out.getvalue()
