"""GitHub's REST description (npm ``@octokit/openapi``, the api.github.com document),
loaded once per process, and a validator of requests and responses against it.

OpenAPI 3.0 schemas become JSON Schema (draft 4, which they are close to): ``nullable``
becomes a ``null`` type (or an ``anyOf`` with ``null`` where there is no type), and
``$ref``s point into one registered resource, so ``jsonschema`` resolves them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator
from referencing import Registry
from referencing.jsonschema import DRAFT4

REPO = Path(__file__).resolve().parents[2]
DOCUMENT = REPO / "tests/node/node_modules/@octokit/openapi/generated/api.github.com.json"
BASE = "urn:github-openapi"
METHODS = ("get", "post", "put", "patch", "delete", "head")


def convert(node: Any) -> Any:
    """An OpenAPI 3.0 tree as JSON Schema (see the module docstring)."""
    if isinstance(node, list):
        return [convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: convert(value) for key, value in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        out["$ref"] = BASE + ref
    if out.get("nullable") is True:
        del out["nullable"]
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            return {"anyOf": [out, {"type": "null"}]}
    return out


@dataclass(frozen=True)
class Route:
    """One path template of the document, as a regular expression."""

    template: str
    pattern: re.Pattern[str]
    names: tuple[str, ...]
    literal: int  # characters outside the {parameters}: the more, the better the match


class Spec:
    """The document, its operations and a validator for any of its schemas."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.raw = document
        self.doc: dict[str, Any] = convert(document)
        self.registry: Registry[Any] = Registry().with_resource(
            BASE, DRAFT4.create_resource(self.doc)
        )
        self.routes = [self._route(t) for t in self.doc["paths"]]

    def _route(self, template: str) -> Route:
        multi = {p["name"] for op in self.doc["paths"][template].values() if isinstance(op, dict)
                 for p in (self.resolve(x) for x in op.get("parameters", []))
                 if p.get("x-multi-segment")}  # fmt: skip
        names: list[str] = []
        regex = ""
        for literal, name in re.findall(r"([^{]*)(?:\{([^}]+)\})?", template):
            regex += re.escape(literal)
            if name:
                names.append(name)
                regex += "(.+)" if name in multi else "([^/]+)"
        literal_len = len(re.sub(r"\{[^}]+\}", "", template))
        return Route(template, re.compile(regex), tuple(names), literal_len)

    def resolve(self, node: Any) -> Any:
        """``node`` with a top-level ``$ref`` followed (repeatedly)."""
        while isinstance(node, dict) and isinstance(node.get("$ref"), str):
            pointer = node["$ref"].removeprefix(BASE).removeprefix("#/")
            node = self.doc
            for part in pointer.split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def match(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        """(path template, path parameters) of the best route for ``method path``."""
        best: tuple[Route, re.Match[str]] | None = None
        for route in self.routes:
            found = route.pattern.fullmatch(path)
            fits = found and method in self.doc["paths"][route.template]
            if fits and (best is None or route.literal > best[0].literal):
                best = (route, found)
        if best is None:
            return None
        route, found = best
        return route.template, dict(zip(route.names, found.groups(), strict=True))

    def operation(self, template: str, method: str) -> dict[str, Any]:
        op: dict[str, Any] = self.doc["paths"][template][method]
        return op

    def errors(self, schema: Any, value: Any) -> list[str]:
        """Why ``value`` does not validate against ``schema`` (empty when it does)."""
        validator = Draft4Validator(schema, registry=self.registry)
        return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}"
                for e in validator.iter_errors(value)]  # fmt: skip

    def parameters(self, op: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
        """The operation's parameters ``in`` path / query / header, by name."""
        params = (self.resolve(p) for p in op.get("parameters", []))
        return {p["name"]: p for p in params if p.get("in") == where}

    def check_parameters(self, op: dict[str, Any], where: str, values: dict[str, str]) -> list[str]:
        """Problems of the path or query ``values`` against the operation's parameters."""
        declared = self.parameters(op, where)
        problems = [f"{where} parameter {n!r} is not declared" for n in values if n not in declared]
        for name, param in declared.items():
            if name not in values:
                if param.get("required"):
                    problems.append(f"required {where} parameter {name!r} missing")
                continue
            value: Any = values[name]
            kind = self.resolve(param.get("schema", {})).get("type")
            if kind in ("integer", ["integer", "null"]) and re.fullmatch(r"-?\d+", value):
                value = int(value)
            problems += [
                f"{where} {name}: {e}" for e in self.errors(param.get("schema", {}), value)
            ]
        return problems

    def body_schema(self, op: dict[str, Any]) -> tuple[bool, Any | None]:
        """(whether a body is required, its JSON schema or None when none is declared)."""
        body = self.resolve(op.get("requestBody")) if op.get("requestBody") else None
        if not body:
            return False, None
        return bool(body.get("required")), body["content"]["application/json"]["schema"]

    def response(self, op: dict[str, Any], status: int) -> tuple[Any | None, Any | None]:
        """(schema, first example value) of the operation's ``status`` JSON answer."""
        answer = self.resolve(op["responses"].get(str(status), {}))
        content = answer.get("content", {}).get("application/json", {})
        examples = content.get("examples") or {}
        example = next(iter(examples.values()), None)
        value = self.resolve(example).get("value") if example else None
        return content.get("schema"), json.loads(json.dumps(value)) if value is not None else None


@cache
def spec() -> Spec:
    """The document, loaded and converted once per process (about two seconds)."""
    if not DOCUMENT.is_file():
        raise FileNotFoundError(
            f"{DOCUMENT} is missing: run scripts/bootstrap.sh (npm ci --prefix tests/node)"
        )
    return Spec(json.loads(DOCUMENT.read_text()))
