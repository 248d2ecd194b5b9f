"""Import hygiene of ``src/vmrunner``, checked statically and at run time.

The static half parses every module with :mod:`ast` and builds the import graph: every
``import`` and ``from ... import`` at module level *and* inside functions, resolved to
vmrunner modules. ``from pkg import x`` is an edge to ``pkg`` (its ``__init__`` runs and
``x`` is looked up there) and, when ``x`` is a submodule, to ``pkg.x`` as well; importing
``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``, which the closure follows.
Imports under ``if TYPE_CHECKING:`` never run and are left out.

* (a) the module-level graph has no cycles (a cycle is reported as ``a -> b -> a``),
  nor has the graph with function-level imports (a lazy import that closes a cycle
  only hides it; :data:`LAZY_EDGES_ALLOWED` lists the ones accepted, with why);
* (b) each pure entry point reaches none of the forbidden third-party or standard
  modules through any chain of vmrunner imports, module level or function level.

The run-time half imports each pure entry point in a fresh interpreter and asserts that
none of the forbidden modules ended up in ``sys.modules``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "vmrunner"

# What pure code may not load: I/O, processes, the database and the graph library.
IO_AND_STORE = (
    "sqlalchemy",
    "alembic",
    "asyncio",
    "subprocess",
    "socket",
    "networkx",
    "psycopg",
    "httpx",
)


@dataclass(frozen=True)
class Edge:
    """One import statement: ``source`` imports ``target`` (a dotted module name, in
    vmrunner or not) at ``line``; ``local`` when the statement is inside a function."""

    source: str
    target: str
    line: int
    local: bool


def module_name(path: Path) -> str:
    """``src/vmrunner/a/b.py`` -> ``vmrunner.a.b``; ``a/__init__.py`` -> ``vmrunner.a``."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every vmrunner module by dotted name."""
    return {module_name(p): p for p in sorted((SRC / ROOT).rglob("*.py"))}


def is_package(name: str) -> bool:
    return modules()[name].name == "__init__.py"


def _absolute(source: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from`` import names, resolving leading dots."""
    if node.level == 0:
        return node.module or ""
    package = source if is_package(source) else source.rpartition(".")[0]
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _targets(source: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The modules one statement imports (see the module docstring for ``from``)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = _absolute(source, node)
    yield base
    yield from (f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules())


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, local: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Import statements under ``node``, with whether each is inside a function."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield from _walk(other, local)
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, local
        inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _walk(child, inner)


@cache
def edges() -> tuple[Edge, ...]:
    """Every import statement of every vmrunner module, one edge per imported module."""
    found: list[Edge] = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, local in _walk(tree, local=False):
            found.extend(Edge(name, t, node.lineno, local) for t in _targets(name, node))
    return tuple(found)


def ancestors(name: str) -> list[str]:
    """The packages whose ``__init__`` runs before ``name``: ``a.b.c`` -> ``a``, ``a.b``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _internal(name: str) -> bool:
    return name == ROOT or name.startswith(ROOT + ".")


# Function-level imports (source, target) that may close a cycle, each with its reason.
# Every other cycle was broken by moving code down or passing values in; remove an entry
# once its cycle is gone.
LAZY_EDGES_ALLOWED: dict[tuple[str, str], str] = {}


def graph(include_local: bool) -> dict[str, set[str]]:
    """vmrunner module -> the vmrunner modules it imports (at module level, or also
    inside functions, less :data:`LAZY_EDGES_ALLOWED`)."""
    out: dict[str, set[str]] = {name: set() for name in modules()}
    for e in edges():
        if e.target not in modules() or e.target == e.source:
            continue
        if not e.local or (include_local and (e.source, e.target) not in LAZY_EDGES_ALLOWED):
            out[e.source].add(e.target)
    return out


def find_cycle(adjacency: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None. Iterative DFS, deterministic order."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for start in sorted(adjacency):
        if start in state:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(adjacency[start])))]
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                path = [n for n, _ in stack]
                return [*path[path.index(child) :], child]
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(sorted(adjacency[child]))))
    return None


def closure(start: str) -> dict[str, list[str]]:
    """Every module (vmrunner or not) that importing ``start`` may load, module-level and
    function-level imports alike, each with the chain of vmrunner modules that reaches it."""
    chains: dict[str, list[str]] = {}
    todo = [*ancestors(start), start]
    for name in todo:
        chains.setdefault(name, [name])
    by_source: dict[str, list[str]] = {}
    for edge in edges():
        by_source.setdefault(edge.source, []).append(edge.target)
    while todo:
        name = todo.pop()
        for target in by_source.get(name, []):
            for reached in [*ancestors(target), target] if _internal(target) else [target]:
                if reached not in chains:
                    chains[reached] = [*chains[name], reached]
                    if reached in modules():
                        todo.append(reached)
    return chains


def _matches(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def edges_below(package: str, forbidden_prefixes: Iterable[str]) -> list[Edge]:
    """The import statements in ``package`` (the module and everything under it) whose
    target is one of ``forbidden_prefixes`` (a module and its submodules), direct edges
    only, module and function level alike. For layering rules such as "the CLI imports
    nothing below the service layer"; an empty list means the rule holds."""
    prefixes = tuple(forbidden_prefixes)
    return [e for e in edges() if _matches(e.source, [package]) and _matches(e.target, prefixes)]


def _existing(*names: str) -> list[str]:
    return [n for n in names if n in modules()]


def pure_entry_points() -> list[str]:
    """The modules that must stay pure: all of ``vmrunner.workflow``, ``vmrunner.results``
    (a module or a package, whichever exists), the learning rules and the systest taxonomy."""
    workflow = [n for n in modules() if _matches(n, ["vmrunner.workflow"])]
    results = [n for n in modules() if _matches(n, ["vmrunner.results"])]
    learning_rules = _existing(
        *(
            f"vmrunner.learning.{rule}"
            for rule in (
                "normalise",
                "signature",
                "cluster",
                "predict",
                "lessons",
                "flaky",
                "batch",
                "results",
                "jsonable",
            )
        )
    )
    return sorted({*workflow, *results, *learning_rules, "vmrunner.systest.taxonomy"})


# The data: pure entry point -> what it may not load.
PURE: dict[str, tuple[str, ...]] = dict.fromkeys(pure_entry_points(), IO_AND_STORE)


def test_the_graph_sees_the_whole_package() -> None:
    """Guards the checks below against a parser that silently finds nothing."""
    assert "vmrunner.workflow.check" in modules()
    assert any(e.target == "sqlalchemy" for e in edges())
    assert any(e.local for e in edges())
    assert len(pure_entry_points()) > 20


def test_find_cycle_reports_the_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


@pytest.mark.parametrize("include_local", [False, True], ids=["module-level", "with-local"])
def test_no_import_cycles(include_local: bool) -> None:
    cycle = find_cycle(graph(include_local))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_allowed_lazy_edges_still_close_a_cycle() -> None:
    """An allowance whose import or cycle is gone must be removed from the table."""
    for allowed in sorted(LAZY_EDGES_ALLOWED):
        source, target = allowed
        assert any(e.local and (e.source, e.target) == allowed for e in edges()), allowed
        assert source in _reachable(graph(include_local=True), target), allowed


def _reachable(adjacency: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for child in adjacency[todo.pop()] - seen:
            seen.add(child)
            todo.append(child)
    return seen


@pytest.mark.parametrize("entry", sorted(PURE))
def test_pure_module_imports_nothing_forbidden(entry: str) -> None:
    reached = closure(entry)
    bad = {name: chain for name, chain in reached.items() if _matches(name, PURE[entry])}
    assert not bad, "\n".join(" -> ".join(chain) for chain in sorted(bad.values()))


# One fresh interpreter per package keeps this fast; each entry point is imported alone
# in it, then the forbidden modules are looked for, then it is unloaded again.
_RUNTIME_PROBE = """
import importlib, json, sys
forbidden, entries = json.loads(sys.argv[1])
base = set(sys.modules)
found = {}
for entry in entries:
    importlib.import_module(entry)
    loaded = [f for f in forbidden if any(m == f or m.startswith(f + ".") for m in sys.modules)]
    if loaded:
        found[entry] = sorted(loaded)
    for m in set(sys.modules) - base:
        del sys.modules[m]
print(json.dumps(found))
"""


def _runtime_groups() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for entry in PURE:
        groups.setdefault(".".join(entry.split(".")[:2]), []).append(entry)
    return groups


@pytest.mark.parametrize("group", sorted(_runtime_groups()))
def test_pure_modules_load_nothing_forbidden_at_run_time(group: str) -> None:
    import json

    entries = _runtime_groups()[group]
    forbidden = sorted({f for e in entries for f in PURE[e]})
    proc = subprocess.run(
        [sys.executable, "-c", _RUNTIME_PROBE, json.dumps([forbidden, entries])],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {}


# The edges: every CLI module, the MCP server, the HTTP API and the web dashboard.
EDGE_MODULES = tuple(
    sorted(
        m
        for m in modules()
        if m.startswith("vmrunner.cli")
        or _matches(m, ["vmrunner.mcp", "vmrunner.api", "vmrunner.dashboard"])
    )
)
BELOW_SERVICES = (
    "vmrunner.vm", "vmrunner.runner", "vmrunner.store", "vmrunner.images", "vmrunner.guest",
    "vmrunner.systest", "vmrunner.learning",
)  # fmt: skip


@pytest.mark.parametrize("edge", EDGE_MODULES)
def test_edges_import_nothing_below_the_service_layer(edge: str) -> None:
    """The CLI (and the MCP server) call ``vmrunner.services`` only: never the VM, the
    runner, the store, images, the guest channel, systest internals or learning."""
    found = edges_below(edge, BELOW_SERVICES)
    assert not found, "\n".join(f"{e.source}:{e.line} imports {e.target}" for e in found)


def test_the_edge_rule_can_fail() -> None:
    assert edges_below("vmrunner.services", BELOW_SERVICES), "services do reach below"
