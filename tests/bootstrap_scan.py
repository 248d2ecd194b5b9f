"""A static walk of Python code for the programs it runs on the host (see
test_bootstrap_programs.py, which checks that scripts/bootstrap.sh installs them).

Host commands are found in the argv given to ``subprocess.run/Popen/...``,
``asyncio.create_subprocess_exec`` and the project's helpers (``run_tool``, ``run_capture``,
``run_probe``, ``stream_tool``, ``spawn_vmm``), and in the names looked up with
``require_tool("x")`` or ``shutil.which("x")``; in tests/guest/, whose agent runs on the
host, in ``channel.exec([...])`` too. argv[0] is followed through local and module names,
``from M import NAME`` of project modules, ``[*prefix, ...]`` lists whose prefix may be
empty, ``x or y``, ``a if c else b``, loops over literal tuples, ``str(...)`` and
``{t: shutil.which(t) for t in ...}[NAME]`` tables. Where it cannot be followed (a
parameter, a call's result) the command is reported as unresolved, by ``file::function``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# Calls whose first argument is an argv run on the host.
EXEC_CALLS = frozenset({
    "subprocess.run", "subprocess.Popen", "subprocess.call", "subprocess.check_call",
    "subprocess.check_output", "asyncio.create_subprocess_exec", "run_tool", "run_capture",
    "run_probe", "stream_tool", "spawn_vmm", "os.execvp", "os.execv",
})  # fmt: skip
# Calls whose first argument is the name of a host program.
LOOKUP_CALLS = frozenset({"require_tool", "shutil.which"})
# Directories where ``.exec([...])`` runs on the host (the agent under test runs there).
HOST_EXEC_DIRS = ("tests/guest/",)


@dataclass(frozen=True)
class Use:
    """One host program that the code runs (or looks up), and where."""

    program: str
    where: str  # path:line


def bootstrap_packages(text: str) -> set[str]:
    """The packages of the ``PKGS=( ... )`` array in bootstrap.sh's text."""
    m = re.search(r"^PKGS=\((.*?)\)", text, re.M | re.S)
    assert m, "scripts/bootstrap.sh has no PKGS=( ... ) array"
    words = re.sub(r"#[^\n]*", "", m.group(1)).split()
    return set(words)


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


Binding = tuple[str, ast.expr, "_Scopes"]  # ("value" | "each", expression, where it is)


class _Scopes:
    """One parsed file: the name bindings of its functions and module (assignments, loop
    and comprehension targets, ``from M import NAME`` of project modules)."""

    def __init__(self, path: Path, tree: ast.Module) -> None:
        self.path, self.tree = path, tree
        self.parent: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parent[child] = node

    def qualname(self, node: ast.AST) -> str:
        names = []
        while node in self.parent:
            node = self.parent[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.append(node.name)
        return ".".join(reversed(names))

    def bindings(self, name: str, at: ast.AST) -> list[Binding]:
        """Where ``name``, used at ``at``, may get its value; raises ``Unresolved`` when it
        is a parameter or bound nowhere that can be followed."""
        node = at
        while node in self.parent:
            node = self.parent[node]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module):
                found = self.scope_bindings(node, name)
                if found:
                    return found
        raise Unresolved

    def scope_bindings(self, scope: ast.AST, name: str) -> list[Binding]:
        found: list[Binding] = []
        for node in _own_nodes(scope):
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    found.append(("value", node.value, self))
            elif isinstance(node, ast.For | ast.comprehension):
                if isinstance(node.target, ast.Name) and node.target.id == name:
                    found.append(("each", node.iter, self))
            elif isinstance(node, ast.arg) and node.arg == name:
                raise Unresolved
            elif isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        other = _module(self.path, node)
                        found += other.scope_bindings(other.tree, alias.name)
        return found


def _module(path: Path, node: ast.ImportFrom) -> _Scopes:
    """The project module that ``node`` (in ``path``) imports from."""
    if node.level:
        base = path.parent
        for _ in range(node.level - 1):
            base = base.parent
    elif (node.module or "").split(".")[0] == "vmrunner":
        base = REPO / "src"
    else:
        base = REPO / "tests"  # conftest and friends, on pytest's rootdir path
    parts = (node.module or "").split(".") if node.module else []
    for candidate in (
        base.joinpath(*parts).with_suffix(".py"),
        base.joinpath(*parts, "__init__.py"),
    ):
        if parts and candidate.is_file():
            return _parse(candidate)
    raise Unresolved


_PARSED: dict[Path, _Scopes] = {}


def _parse(path: Path) -> _Scopes:
    if path not in _PARSED:
        _PARSED[path] = _Scopes(path, ast.parse(path.read_text(), str(path)))
    return _PARSED[path]


def _own_nodes(scope: ast.AST) -> Iterator[ast.AST]:
    """The nodes of ``scope`` not inside a nested function or class (its parameters included)."""
    todo = list(ast.iter_child_nodes(scope))
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            todo.extend(ast.iter_child_nodes(node))


class Unresolved(Exception):
    """argv[0] could not be followed to a literal."""


@dataclass
class _Resolver:
    """Follows expressions back to string literals; raises ``Unresolved`` where it cannot."""

    depth: int = 0

    def program(self, e: ast.expr, sc: _Scopes) -> set[str]:
        """The program names ``e`` (one argv element) may be."""
        if isinstance(e, ast.Constant) and isinstance(e.value, str):
            return {e.value}
        if _dotted(e) == "sys.executable":
            return {"python3"}
        if isinstance(e, ast.Call) and e.args and _dotted(e.func) in {*LOOKUP_CALLS, "str", "Path"}:
            return self.program(e.args[0], sc)
        if isinstance(e, ast.BoolOp):
            return set().union(*(self.program(v, sc) for v in e.values))
        if isinstance(e, ast.IfExp):
            return self.program(e.body, sc) | self.program(e.orelse, sc)
        if isinstance(e, ast.Subscript) and isinstance(e.value, ast.Name):
            return self._lookup_table(e, sc)
        if isinstance(e, ast.Name):
            return self._follow(
                e, sc, lambda kind, x, s: (self.program if kind == "value" else self.each)(x, s)
            )
        raise Unresolved

    def each(self, e: ast.expr, sc: _Scopes) -> set[str]:
        """The program names that iterating over ``e`` may give."""
        if isinstance(e, ast.Tuple | ast.List | ast.Set):
            return set().union(set(), *(self.program(x, sc) for x in e.elts))
        if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Add):
            return self.each(e.left, sc) | self.each(e.right, sc)
        if isinstance(e, ast.IfExp):
            return self.each(e.body, sc) | self.each(e.orelse, sc)
        if isinstance(e, ast.Name):
            return self._follow(e, sc, lambda kind, x, s: self._only_values(kind, self.each, x, s))
        raise Unresolved

    def argv(self, e: ast.expr, sc: _Scopes) -> tuple[set[str], bool]:
        """The programs argv ``e`` may start with, and whether it may be empty."""
        if isinstance(e, ast.List | ast.Tuple):
            return self._seq(e.elts, sc)
        if isinstance(e, ast.Constant):  # a lone program name (create_subprocess_exec)
            return self.program(e, sc), False
        if isinstance(e, ast.Call) and _dotted(e.func) == "list" and e.args:
            return self.argv(e.args[0], sc)
        if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Add):
            left, empty = self.argv(e.left, sc)
            return (left | self.argv(e.right, sc)[0], False) if empty else (left, False)
        if isinstance(e, ast.Name):
            found, empty = set(), False
            for kind, value, where in self._bindings(e, sc):
                progs, may_be_empty = self._only_values(kind, self.argv, value, where)
                found |= progs
                empty = empty or may_be_empty
            return found, empty
        raise Unresolved

    def _seq(self, elts: list[ast.expr], sc: _Scopes) -> tuple[set[str], bool]:
        if not elts:
            return set(), True
        if isinstance(elts[0], ast.Starred):
            progs, empty = self.argv(elts[0].value, sc)
            if empty:
                rest, rest_empty = self._seq(elts[1:], sc)
                return progs | rest, rest_empty
            return progs, False
        return self.program(elts[0], sc), False

    def _lookup_table(self, e: ast.Subscript, sc: _Scopes) -> set[str]:
        """``tools["x"]`` where ``tools = {t: shutil.which(t) for t in ...}``: program x."""
        assert isinstance(e.value, ast.Name)
        key = e.slice
        for _kind, value, _where in self._bindings(e.value, sc):
            looks_up = isinstance(value, ast.DictComp) and any(
                isinstance(c, ast.Call) and _dotted(c.func) in LOOKUP_CALLS
                for c in ast.walk(value.value)
            )
            if not looks_up:
                raise Unresolved
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            return {key.value}
        raise Unresolved

    @staticmethod
    def _only_values(kind: str, fn: Any, value: ast.expr, where: _Scopes) -> Any:
        if kind != "value":
            raise Unresolved
        return fn(value, where)

    def _bindings(self, name: ast.Name, sc: _Scopes) -> list[Binding]:
        if self.depth > 20:
            raise Unresolved
        return sc.bindings(name.id, name)

    def _follow(self, name: ast.Name, sc: _Scopes, fn: Any) -> set[str]:
        out: set[str] = set()
        self.depth += 1
        try:
            for kind, expr, where in self._bindings(name, sc):
                out |= fn(kind, expr, where)
        finally:
            self.depth -= 1
        return out


def _argv_arg(call: ast.Call) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg in ("args", "argv"):
            return kw.value
    return call.args[0] if call.args else None


def _host_exec(rel: str, call: ast.Call) -> bool:
    name = _dotted(call.func)
    if name in EXEC_CALLS or name.rsplit(".", 1)[-1] in ("run_tool", "spawn_vmm"):
        return True
    return rel.startswith(HOST_EXEC_DIRS) and name.endswith(".exec")


def scan_file(
    path: Path, rel: str = "", guest_only: Collection[str] = ()
) -> tuple[list[Use], dict[str, list[str]]]:
    """The host programs ``path`` (known as ``rel``, default its path in the repository)
    runs, but for ``guest_only`` ones, and its unresolved commands by ``file::function``."""
    rel = rel or path.relative_to(REPO).as_posix()
    sc = _parse(path)
    uses: list[Use] = []
    unresolved: dict[str, list[str]] = {}
    for node in ast.walk(sc.tree):
        if not isinstance(node, ast.Call):
            continue
        where = f"{rel}:{node.lineno}"
        try:
            if _dotted(node.func) in LOOKUP_CALLS and node.args:
                progs = _Resolver().program(node.args[0], sc)
            elif _host_exec(rel, node) and (arg := _argv_arg(node)) is not None:
                progs = _Resolver().argv(arg.value if isinstance(arg, ast.Starred) else arg, sc)[0]
            else:
                continue
        except Unresolved:
            unresolved.setdefault(f"{rel}::{sc.qualname(node)}", []).append(where)
            continue
        uses += [Use(p, where) for p in progs if p not in guest_only]
    return uses, unresolved
