"""System-test recipes for the Debian flavour: YAML with line numbers, a JSON Schema,
validation with ``FILE:LINE:COL`` errors, and the conversion to an image ``Recipe``.

A recipe::

    name: web
    suite: bookworm                 # default
    packages: [nginx]
    sources: ["deb http://example.org/debian bookworm main"]
    files: [{path: /etc/motd, content: "hi\\n", mode: "0644", owner: root:root}]
    users: [alice, {name: bob, groups: [sudo], shell: /bin/sh}]
    units: [{name: hello.service, content: "...", enable: true, mask: false}]
    run: ["echo built > /etc/built"]
    checks:
      - unit_active: nginx.service
      - port_open: 80
      - command: "curl -fsS http://127.0.0.1/"
      - file_contains: {path: /etc/motd, text: hi}
      - journal_lacks: "segfault|Out of memory"

Pure: ``load_text`` parses and validates text; only ``load_file`` reads a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from vmrunner.errors import UserInputError
from vmrunner.images.recipe import FileSpec, Mirrors, Recipe, UnitSpec, UserSpec

NAME_RE = r"^[a-z0-9][a-z0-9-]{0,62}$"
UNIT_RE = r"^[A-Za-z0-9:_.@-]+\.(service|socket|target|timer|path|mount|slice)$"
_STR = {"type": "string"}
_STRS = {"type": "array", "items": _STR}


def _check(key: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {key: value},
        "required": [key],
        "additionalProperties": False,
    }


RECIPE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://vmrunner.dev/schemas/systest-recipe.json",
    "title": "vmrunner systest recipe (Debian flavour)",
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": NAME_RE, "description": "image and test name"},
        "suite": {"type": "string", "pattern": r"^[a-z]+$", "default": "bookworm"},
        "packages": {**_STRS, "description": "Debian packages added to the base set"},
        "sources": {**_STRS, "description": "extra apt source lines ('deb URL SUITE COMPONENT')"},
        "files": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["path", "content"],
                "additionalProperties": False,
                "properties": {
                    "path": {"type": "string", "pattern": "^/"},
                    "content": _STR,
                    "mode": {"type": "string", "pattern": r"^[0-7]{3,4}$", "default": "0644"},
                    "owner": {
                        "type": "string",
                        "pattern": r"^[a-z_][a-z0-9_-]*(:[a-z_][a-z0-9_-]*)?$",
                    },
                },
            },
        },
        "users": {
            "type": "array",
            "items": {
                "oneOf": [
                    {"type": "string", "pattern": r"^[a-z_][a-z0-9_-]*$"},
                    {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "pattern": r"^[a-z_][a-z0-9_-]*$"},
                            "groups": _STRS,
                            "shell": {"type": "string", "pattern": "^/"},
                        },
                    },
                ]
            },
        },
        "units": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": UNIT_RE},
                    "content": _STR,
                    "enable": {"type": "boolean", "default": True},
                    "mask": {"type": "boolean", "default": False},
                },
            },
        },
        "run": {**_STRS, "description": "build-time shell commands (chroot, /proc, /sys, /dev)"},
        "checks": {
            "type": "array",
            "items": {
                "oneOf": [
                    _check("unit_active", {"type": "string", "pattern": UNIT_RE}),
                    _check("port_open", {"type": "integer", "minimum": 1, "maximum": 65535}),
                    _check("command", {"type": "string", "minLength": 1}),
                    _check(
                        "file_contains",
                        {
                            "type": "object",
                            "required": ["path", "text"],
                            "additionalProperties": False,
                            "properties": {
                                "path": {"type": "string", "pattern": "^/"},
                                "text": _STR,
                            },
                        },
                    ),
                    _check("journal_lacks", {"type": "string", "minLength": 1}),
                ]
            },
        },
    },
}


@dataclass(frozen=True)
class Problem:
    """One reason a recipe is invalid, at a 1-based line and column."""

    line: int
    col: int
    message: str
    path: str = ""


class RecipeInvalidError(UserInputError):
    """A recipe that is not valid YAML or does not match the schema; ``str()`` gives
    one ``FILE:LINE:COL: message`` line per problem."""

    def __init__(self, filename: str, problems: list[Problem]) -> None:
        self.filename = filename
        self.problems = tuple(problems)
        self.line = problems[0].line
        super().__init__(
            "\n".join(f"{filename}:{p.line}:{p.col}: {p.message}" for p in self.problems)
        )


@dataclass(frozen=True)
class Check:
    """One runtime check: ``kind`` is unit_active, port_open, command, file_contains or
    journal_lacks; ``arg`` its argument (``path``/``text`` for file_contains)."""

    kind: str
    arg: str
    text: str = ""
    line: int = 0
    file: str = ""  # the recipe or checks file the check was written in

    def describe(self) -> str:
        if self.kind == "file_contains":
            return f"file_contains {self.arg}: {self.text!r}"
        return f"{self.kind}: {self.arg}"


@dataclass(frozen=True)
class SystestRecipe:
    """A validated recipe: the image recipe to build and the checks to run."""

    image: Recipe
    checks: tuple[Check, ...]
    filename: str


def _position(root: Any, path: list[str | int]) -> tuple[int, int]:
    """The 1-based position of the node at ``path`` (or of its deepest existing parent)."""
    node, line, col = root, 0, 0
    if isinstance(root, CommentedMap | CommentedSeq):
        line, col = root.lc.line, root.lc.col
    for key in path:
        if isinstance(node, CommentedMap) and key in node:
            line, col = (
                node.lc.value(key)
                if not isinstance(node[key], CommentedMap | CommentedSeq)
                else node.lc.key(key)
            )
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and key < len(node):
            line, col = node.lc.item(key)
            node = node[key]
        else:
            break
    return line + 1, col + 1


def _plain(node: Any) -> Any:
    if isinstance(node, CommentedMap):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v) for v in node]
    return node


def _parse(text: str, filename: str) -> Any:
    yaml = YAML(typ="rt")
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise RecipeInvalidError(filename, [Problem(line, col, f"YAML: {exc.problem}")]) from exc
    except YAMLError as exc:
        raise RecipeInvalidError(filename, [Problem(1, 1, f"YAML: {exc}")]) from exc


def _specific(err: ValidationError) -> ValidationError:
    """For a ``oneOf`` failure, the error from the branch the item meant (its key or type)."""
    if err.validator != "oneOf" or not err.context:
        return err
    inst = err.instance

    def meant(sub: ValidationError) -> bool:
        branch: dict[str, Any] = err.validator_value[sub.relative_schema_path[0]]
        if isinstance(inst, dict):
            return set(inst) <= set(branch.get("properties", {})) and branch["type"] == "object"
        return bool(branch["type"] != "object")

    chosen = [sub for sub in err.context if meant(sub)]
    if not chosen:
        return err
    return _specific(max(chosen, key=lambda sub: len(sub.absolute_path)))


def validate(root: Any, filename: str, schema: dict[str, Any] = RECIPE_SCHEMA) -> None:
    """Raise ``RecipeInvalidError`` listing every schema violation, in file order."""
    validator = Draft202012Validator(schema)
    problems: list[Problem] = []
    for err in map(_specific, validator.iter_errors(_plain(root))):
        path = list(err.absolute_path)
        line, col = _position(root, path)
        where = ".".join(str(p) for p in path) or "(top level)"
        problems.append(Problem(line, col, f"{where}: {err.message}", where))
    if problems:
        raise RecipeInvalidError(filename, sorted(problems, key=lambda p: (p.line, p.col)))


def _checks(root: Any, filename: str) -> tuple[Check, ...]:
    out: list[Check] = []
    for i, item in enumerate(root.get("checks") or []):
        line = root["checks"].lc.item(i)[0] + 1
        ((kind, value),) = item.items()
        if kind == "file_contains":
            out.append(Check(kind, str(value["path"]), str(value["text"]), line, filename))
        else:
            out.append(Check(str(kind), str(value), line=line, file=filename))
    return tuple(out)


def _users(items: list[Any]) -> tuple[UserSpec, ...]:
    out = []
    for u in items:
        if isinstance(u, str):
            out.append(UserSpec(u))
        else:
            out.append(
                UserSpec(
                    str(u["name"]), tuple(u.get("groups") or ()), str(u.get("shell", "/bin/bash"))
                )
            )
    return tuple(out)


def to_recipe(root: Any, filename: str, mirrors: Mirrors | None = None) -> SystestRecipe:
    """Convert a validated tree into the image recipe (named ``systest-NAME``, its apt
    sources on ``mirrors``, default Debian's own archives) and checks."""
    mirrors = mirrors or Mirrors()
    image = Recipe(
        mirror=mirrors.debian,
        security_mirror=mirrors.security,
        name=f"systest-{root['name']}",
        suite=str(root.get("suite", "bookworm")),
        extra_packages=tuple(str(p) for p in root.get("packages") or ()),
        extra_sources=tuple(str(s) for s in root.get("sources") or ()),
        files=tuple(
            FileSpec(
                str(f["path"]),
                str(f["content"]),
                int(str(f.get("mode", "0644")), 8),
                str(f.get("owner", "root:root")),
            )
            for f in root.get("files") or ()
        ),  # fmt: skip
        users=_users(list(root.get("users") or ())),
        units=tuple(
            UnitSpec(
                str(u["name"]),
                str(u.get("content", "")),
                bool(u.get("enable", True)),
                bool(u.get("mask", False)),
            )
            for u in root.get("units") or ()
        ),  # fmt: skip
        run=tuple(str(c) for c in root.get("run") or ()),
    )
    return SystestRecipe(image=image, checks=_checks(root, filename), filename=filename)


def load_text(
    text: str, filename: str = "<recipe>", mirrors: Mirrors | None = None
) -> SystestRecipe:
    """Parse, validate and convert recipe ``text`` (apt sources on ``mirrors``, see
    :func:`to_recipe`); raise ``RecipeInvalidError``."""
    root = _parse(text, filename)
    if not isinstance(root, CommentedMap):
        raise RecipeInvalidError(filename, [Problem(1, 1, "a recipe must be a YAML mapping")])
    validate(root, filename)
    return to_recipe(root, filename, mirrors)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise RecipeInvalidError(
            str(path), [Problem(1, 1, f"cannot read: {exc.strerror}")]
        ) from exc


def load_file(path: Path, mirrors: Mirrors | None = None) -> SystestRecipe:
    """Read and load the recipe at ``path`` (apt sources on ``mirrors``)."""
    return load_text(_read(path), str(path), mirrors)


CHECKS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "vmrunner systest checks (--checks FILE)",
    "type": "object",
    "required": ["checks"],
    "additionalProperties": False,
    "properties": {"checks": RECIPE_SCHEMA["properties"]["checks"]},
}


def load_checks_text(text: str, filename: str = "<checks>") -> tuple[Check, ...]:
    """Parse and validate a checks file (``checks:`` as in a recipe, nothing else)."""
    root = _parse(text, filename)
    if not isinstance(root, CommentedMap):
        raise RecipeInvalidError(filename, [Problem(1, 1, "a checks file must be a YAML mapping")])
    validate(root, filename, CHECKS_SCHEMA)
    return _checks(root, filename)


def load_checks_file(path: Path) -> tuple[Check, ...]:
    """Read and load the checks file at ``path``."""
    return load_checks_text(_read(path), str(path))


def recipe_schema() -> dict[str, Any]:
    """The JSON Schema of a systest recipe (what ``vmrunner schema recipe`` prints)."""
    return RECIPE_SCHEMA


def looks_like_flake(config: str) -> bool:
    """True if ``config`` is a flake reference rather than a recipe file name."""
    return not re.search(r"\.ya?ml$", config) and (
        "#" in config or ":" in config or Path(config, "flake.nix").exists()
    )
