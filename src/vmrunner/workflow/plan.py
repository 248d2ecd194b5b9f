"""The jobs DAG built from ``needs``, per-job scheduling, and GitHub's skip rule.

Pure code. Scheduling is per job, not in stages: a job is ready as soon as every job it
needs has finished, whatever else is still running (as on GitHub; act's stage barriers
are not reproduced).

The skip rule: a job's ``if:`` without a status function (``success()``, ``always()``,
``failure()``, ``cancelled()``) is implicitly ``success() && (if)``. At job level the
status functions look at every *ancestor* (the jobs it needs, transitively), which is why
a failure or skip "applies to all jobs in the dependency chain from that point onwards":

* ``success()``: every ancestor succeeded and the run is not cancelled;
* ``failure()``: some ancestor failed;
* ``cancelled()``: the run was cancelled;
* ``always()``: true.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Any, Literal

from vmrunner.errors import UserInputError

from .expressions import (
    STATUS_FUNCTIONS,
    Node,
    evaluate,
    find_expressions,
    parse,
    referenced_functions,
    to_bool,
)
from .expressions.nodes import Call
from .expressions.nodes import Literal as LiteralNode

JobResult = Literal["success", "failure", "cancelled", "skipped"]
JOB_RESULTS: tuple[JobResult, ...] = ("success", "failure", "cancelled", "skipped")


class PlanError(UserInputError):
    """A ``needs`` graph that cannot be scheduled (unknown job, cycle)."""


@dataclass(frozen=True, slots=True)
class JobGraph:
    """Jobs in declaration order and, for each, the jobs it needs (deduplicated, in order).

    Build it with :meth:`from_needs`, which guarantees the graph is acyclic and closed.
    """

    jobs: tuple[str, ...]
    needs: Mapping[str, tuple[str, ...]]

    @classmethod
    def from_needs(cls, needs: Mapping[str, Sequence[str] | str | None]) -> JobGraph:
        """The graph of ``{job_id: needs}`` (a job id, a list of them, or None).

        Raises :class:`PlanError` naming the jobs for a need of an unknown job or a cycle
        (a job needing itself included).
        """
        normalised = {job: _as_tuple(job, value) for job, value in needs.items()}
        for job, wanted in normalised.items():
            for dep in wanted:
                if dep not in normalised:
                    raise PlanError(f"Job '{job}' depends on unknown job '{dep}'")
        graph = cls(tuple(normalised), MappingProxyType(normalised))
        cycle = graph._find_cycle()
        if cycle:
            raise PlanError(f"Jobs form a dependency cycle: {' -> '.join(cycle)}")
        return graph

    def _find_cycle(self) -> list[str]:
        """One cycle as a closed path (``a -> b -> a``), or [] (iterative DFS)."""
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done
        for root in self.jobs:
            if root in state:
                continue
            path: list[str] = []
            stack: list[tuple[str, int]] = [(root, 0)]
            while stack:
                job, i = stack.pop()
                if i == 0:
                    state[job] = 1
                    path.append(job)
                deps = self.needs[job]
                if i < len(deps):
                    stack.append((job, i + 1))
                    dep = deps[i]
                    if state.get(dep) == 1:
                        return [*path[path.index(dep) :], dep]
                    if dep not in state:
                        stack.append((dep, 0))
                else:
                    state[job] = 2
                    path.pop()
        return []

    def dependents(self, job: str) -> tuple[str, ...]:
        """The jobs that need ``job`` directly, in declaration order."""
        return tuple(other for other in self.jobs if job in self.needs[other])

    def ancestors(self, job: str) -> frozenset[str]:
        """Every job ``job`` needs, directly or transitively (not ``job`` itself)."""
        seen: set[str] = set()
        stack = list(self.needs[job])
        while stack:
            dep = stack.pop()
            if dep not in seen:
                seen.add(dep)
                stack.extend(self.needs[dep])
        return frozenset(seen)

    def ready(self, done: Mapping[str, str], running: Collection[str] = ()) -> tuple[str, ...]:
        """The jobs not done nor running whose needs are all done, in declaration order.

        ``done`` maps finished jobs to their result; whatever the results, a job becomes
        ready: whether it then runs or is skipped is :func:`job_should_run`'s decision.
        """
        return tuple(
            job
            for job in self.jobs
            if job not in done and job not in running and all(d in done for d in self.needs[job])
        )

    def topological_order(self) -> tuple[str, ...]:
        """Every job after all it needs; ties keep declaration order (Kahn's algorithm)."""
        order: list[str] = []
        done: dict[str, str] = {}
        while len(order) < len(self.jobs):
            batch = self.ready(done)
            order.extend(batch)
            done.update(dict.fromkeys(batch, "success"))
        return tuple(order)


def _as_tuple(job: str, value: Sequence[str] | str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(item, str) for item in items):
        raise PlanError(f"Job '{job}': needs must be job ids, not {items!r}")
    return tuple(dict.fromkeys(items))


def topological_order(graph: JobGraph) -> tuple[str, ...]:
    """Same as :meth:`JobGraph.topological_order`."""
    return graph.topological_order()


@dataclass(frozen=True, slots=True)
class NeedsStatus:
    """What the job-level status functions return for one job."""

    success: bool
    failure: bool
    cancelled: bool

    @classmethod
    def of(cls, ancestor_results: Iterable[str], *, run_cancelled: bool = False) -> NeedsStatus:
        """The status from the results of every ancestor (see the module docstring)."""
        results = list(ancestor_results)
        for result in results:
            if result not in JOB_RESULTS:
                raise ValueError(f"unknown job result {result!r}")
        all_ok = all(r == "success" for r in results)
        return cls(all_ok and not run_cancelled, "failure" in results, run_cancelled)


def needs_status(
    graph: JobGraph, job: str, results: Mapping[str, str], *, run_cancelled: bool = False
) -> NeedsStatus:
    """:class:`NeedsStatus` of ``job`` given the results of (at least) its ancestors."""
    return NeedsStatus.of((results[a] for a in graph.ancestors(job)), run_cancelled=run_cancelled)


def strip_braces(if_expr: str) -> str:
    """The expression of an ``if:``: the inside when the whole value is one ``${{ }}``,
    else the value itself (GitHub lets ``if:`` omit the braces)."""
    text = if_expr.strip()
    spans = find_expressions(text)
    if len(spans) == 1 and spans[0][0] == 0 and spans[0][1] == len(text):
        return spans[0][2].strip()
    return text


def uses_status_function(if_expr: str | None) -> bool:
    """Whether the ``if:`` calls a status function. Raises ExpressionSyntaxError."""
    if if_expr is None or not if_expr.strip():
        return False
    return bool(referenced_functions(parse(strip_braces(if_expr))) & STATUS_FUNCTIONS)


def implicit_success(if_expr: str | None) -> str:
    """The condition GitHub really evaluates: ``success()`` for no ``if:``, the ``if:``
    itself when it calls a status function, else ``success() && (if)``. ``${{ }}``
    around the whole value is removed. Raises ExpressionSyntaxError for a bad ``if:``."""
    if if_expr is None or not if_expr.strip():
        return "success()"
    inner = strip_braces(if_expr)
    if uses_status_function(inner):
        return inner
    return f"success() && ({inner})"


def needs_satisfied(ancestor_results: Iterable[str], if_expr: str | None) -> bool:
    """False when the job is skipped without evaluating its ``if:``: some ancestor did not
    succeed and the ``if:`` calls no status function. True means "evaluate the condition"
    (:func:`job_should_run`), not "run"."""
    if uses_status_function(if_expr):
        return True
    return all(result == "success" for result in ancestor_results)


def job_should_run(if_expr: str | None, contexts: Mapping[str, Any], status: NeedsStatus) -> bool:
    """Evaluate the job's ``if:`` (with the implicit ``success()``) against ``contexts``
    (``github``, ``needs``, ``vars``, ``inputs``...) and ``status``.

    Raises ExpressionError (a UserInputError) for a bad expression or a context that is
    not in ``contexts``. Does not look at ``needs`` results: ``status`` carries them.
    """
    node = parse(implicit_success(if_expr), allowed_contexts=contexts)
    return to_bool(evaluate(bind_status_functions(node, status), contexts))


def bind_status_functions(node: Node, status: NeedsStatus) -> Node:
    """``node`` with every status-function call replaced by its boolean value."""
    if isinstance(node, Call) and node.name.lower() in STATUS_FUNCTIONS:
        name = node.name.lower()
        value = True if name == "always" else bool(getattr(status, name))
        return LiteralNode(value, pos=node.pos)
    changes: dict[str, Any] = {}
    for f in fields(node):
        value = getattr(node, f.name)
        if isinstance(value, Node):
            changes[f.name] = bind_status_functions(value, status)
        elif isinstance(value, tuple) and value and isinstance(value[0], Node):
            changes[f.name] = tuple(bind_status_functions(v, status) for v in value)
    return replace(node, **changes) if changes else node


def needs_context(
    graph: JobGraph,
    job: str,
    results: Mapping[str, str],
    outputs: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """The ``needs`` context of ``job``: its direct needs with ``result`` and ``outputs``."""
    outputs = outputs or {}
    return {
        dep: {"result": results[dep], "outputs": dict(outputs.get(dep, {}))}
        for dep in graph.needs[job]
    }
