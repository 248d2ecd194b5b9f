"""The fast path: "is this workflow valid?" without jsonschema.

Most workflows are valid, and jsonschema spends ~5 ms finding that out for a typical
file. This compiles the (fixed, small) keyword subset the schema uses into closures
that answer only "valid or not", several times faster; jsonschema runs only when the
answer is "not", to say why (:mod:`.explain`). tests/workflow/test_schema.py checks
that both agree. The closures loop instead of building generators: this is the inner
loop of ``vmrunner check``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from vmrunner.workflow.schema.document import load_schema
from vmrunner.workflow.schema.nodes import as_text, is_scalar

Check = Callable[[Any], bool]


def _always(_x: Any) -> bool:
    return True


def _never(_x: Any) -> bool:
    return False


def _equal(one: Any, two: Any) -> bool:
    if isinstance(one, bool) or isinstance(two, bool):
        return one is two
    return bool(one == two)


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _is_integer(x: Any) -> bool:
    return (isinstance(x, int) and not isinstance(x, bool)) or (
        isinstance(x, float) and x.is_integer()
    )


_TYPES: dict[str, Check] = {
    "object": lambda x: isinstance(x, dict),
    "array": lambda x: isinstance(x, list),
    "string": is_scalar,
    "number": _is_number,
    "integer": _is_integer,
    "boolean": lambda x: isinstance(x, bool),
    "null": lambda x: x is None,
}


def _all(checks: list[Check]) -> Check:
    """A check that passes when every one of ``checks`` does (in order, stopping early)."""
    checks = [c for c in checks if c is not _always]
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda x: first(x) and second(x)

    def check(x: Any) -> bool:
        for c in checks:  # noqa: SIM110 (a loop is faster than all() over a generator)
            if not c(x):
                return False
        return True

    return check


def _any(checks: list[Check]) -> Check:
    """A check that passes when one of ``checks`` does (in order, stopping early)."""
    if len(checks) == 1:
        return checks[0]

    def check(x: Any) -> bool:
        for c in checks:  # noqa: SIM110 (a loop is faster than any() over a generator)
            if c(x):
                return True
        return False

    return check


class _Compiler:
    """Compiles a draft-07 schema (the keywords this schema uses) into a predicate."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, Check] = {}

    def compile(self, schema: Any) -> Check:
        if schema is True or schema == {}:
            return _always
        if schema is False:
            return _never
        checks: list[Check] = []
        for key, value in schema.items():
            keyword = getattr(self, "k_" + key.replace("$", "_"), None)
            if keyword is not None:  # unknown keywords are annotations
                checks.append(keyword(value, schema))
        return _all(checks)

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
        return _any([_TYPES[n] for n in (names if isinstance(names, list) else [names])])

    def k_properties(self, props: dict[str, Any], schema: Any) -> Check:
        if "patternProperties" in schema or "additionalProperties" in schema:
            return _always  # handled together by k_additionalProperties
        checks = {k: self.compile(v) for k, v in props.items()}

        def check(x: Any) -> bool:
            if isinstance(x, dict):
                for key, value in x.items():
                    c = checks.get(key)
                    if c is not None and not c(value):
                        return False
            return True

        return check

    def k_patternProperties(self, _p: Any, schema: Any) -> Check:
        if "additionalProperties" in schema:
            return _always
        return self.k_additionalProperties(True, schema)

    def k_additionalProperties(self, extra: Any, schema: Any) -> Check:
        props = {k: self.compile(v) for k, v in schema.get("properties", {}).items()}
        patterns = [(re.compile(p).search, self.compile(v))
                    for p, v in schema.get("patternProperties", {}).items()]  # fmt: skip
        other = self.compile(extra)

        def check_key(key: str, value: Any) -> bool:
            matched = False
            for search, c in patterns:
                if search(key):
                    matched = True
                    if not c(value):
                        return False
            if key in props:
                return props[key](value)
            return matched or other(value)

        def check(x: Any) -> bool:
            if isinstance(x, dict):
                for key, value in x.items():
                    if not check_key(key, value):
                        return False
            return True

        return check

    def k_items(self, items: Any, _schema: Any) -> Check:
        each = self.compile(items)

        def check(x: Any) -> bool:
            if isinstance(x, list):
                for item in x:
                    if not each(item):
                        return False
            return True

        return check

    def k_required(self, keys: list[str], _schema: Any) -> Check:
        wanted = frozenset(keys)
        return lambda x: not isinstance(x, dict) or wanted <= x.keys()

    def k_enum(self, options: list[Any], _schema: Any) -> Check:
        if all(isinstance(o, str) for o in options):
            names = frozenset(options)  # a str equals only a str (_equal agrees)
            return lambda x: isinstance(x, str) and x in names
        return lambda x: any(_equal(x, o) for o in options)

    def k_const(self, value: Any, _schema: Any) -> Check:
        return lambda x: _equal(x, value)

    def k_anyOf(self, subs: list[Any], _schema: Any) -> Check:
        return _any([self.compile(s) for s in subs])

    def k_oneOf(self, subs: list[Any], _schema: Any) -> Check:
        checks = [self.compile(s) for s in subs]
        return lambda x: sum(1 for c in checks if c(x)) == 1

    def k_allOf(self, subs: list[Any], _schema: Any) -> Check:
        return _all([self.compile(s) for s in subs])

    def k_not(self, sub: Any, _schema: Any) -> Check:
        check = self.compile(sub)
        return lambda x: not check(x)

    def k_minItems(self, size: int, _schema: Any) -> Check:
        return lambda x: not isinstance(x, list) or len(x) >= size

    def k_minProperties(self, size: int, _schema: Any) -> Check:
        return lambda x: not isinstance(x, dict) or len(x) >= size

    def k_minLength(self, size: int, _schema: Any) -> Check:
        return lambda x: not is_scalar(x) or len(as_text(x)) >= size

    def k_pattern(self, pattern: str, _schema: Any) -> Check:
        search = re.compile(pattern).search
        return lambda x: not is_scalar(x) or search(as_text(x)) is not None

    def k_dependencies(self, deps: dict[str, list[str]], _schema: Any) -> Check:
        needs = [(key, frozenset(needed)) for key, needed in deps.items()]
        return lambda x: (
            not isinstance(x, dict) or all(n <= x.keys() for key, n in needs if key in x)
        )


@functools.cache
def _fast_check() -> Check:
    schema = load_schema()
    return _Compiler(schema).compile(schema)


def fast_is_valid(data: Any) -> bool:
    """Whether ``data`` is valid, by the compiled fast path (same verdict as jsonschema)."""
    return bool(_fast_check()(data))
