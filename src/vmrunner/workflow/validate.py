"""GitHub's semantic rules for one workflow: what the JSON schema cannot express.

* Job and step ids: syntax, reserved ``__`` prefix, length, duplicate step ids (case
  insensitive) within a job.
* ``needs``: unknown jobs, cycles, and at least one job without dependencies.
* ``runs-on`` runner groups, empty container images and empty matrix vectors.
* ``${{ }}`` expressions: syntax, length, the ``insert`` directive, and which contexts
  and functions each key may use (GitHub's "context availability" table).

Messages use GitHub's wording. Every rule is pure and works on the model (or, for
expressions, on the tree); none of them reads another file: rules about calling other
workflows are in :mod:`vmrunner.workflow.check`. Does not repeat what the schema checks.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from vmrunner.workflow.expressions import (
    MAX_LENGTH,
    STATUS_FUNCTIONS,
    ExpressionSyntaxError,
    find_expressions,
    parse,
    walk,
)
from vmrunner.workflow.expressions.nodes import Call
from vmrunner.workflow.loader import MappingNode, Node, Pos, ScalarNode, SequenceNode
from vmrunner.workflow.model import Job, Workflow


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule: where, what, and a short rule code."""

    pos: Pos
    message: str
    code: str


# ---- ids ---------------------------------------------------------------------------

_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
MAX_ID_LENGTH = 100


def id_problem(ident: str) -> str | None:
    """Why ``ident`` is not a valid job or step id, or None when it is valid."""
    if not _ID.match(ident) or len(ident) >= MAX_ID_LENGTH:
        return (
            f"The identifier '{ident}' is invalid. IDs may only contain alphanumeric "
            "characters, '_', and '-'. IDs must start with a letter or '_' and must be "
            f"less than {MAX_ID_LENGTH} characters."
        )
    if ident.startswith("__"):
        return f"The identifier '{ident}' is invalid. IDs starting with '__' are reserved."
    return None


def check_job_ids(workflow: Workflow) -> Iterator[Problem]:
    """Every job id that GitHub would refuse."""
    for key, _ in workflow.jobs_node.pairs if workflow.jobs_node else ():
        if (message := id_problem(key.text)) is not None:
            yield Problem(key.pos, message, "job-id")


def check_step_ids(job: Job) -> Iterator[Problem]:
    """Invalid and duplicate (case-insensitive) step ids within one job."""
    seen: set[str] = set()
    for step in job.steps:
        if step.id is None or not isinstance(step.id.value, str) or "${{" in step.id.text:
            continue
        ident = step.id.text
        if (message := id_problem(ident)) is not None:
            yield Problem(step.id.pos, message, "step-id")
        elif ident.lower() in seen:
            message = (
                f"The identifier '{ident}' may not be used more than once within the same scope."
            )
            yield Problem(step.id.pos, message, "step-id")
        seen.add(ident.lower())


# ---- needs -------------------------------------------------------------------------


def _reaches(graph: dict[str, list[str]], start: str, goal: str) -> bool:
    stack, seen = [start], {start}
    while stack:
        current = stack.pop()
        if current == goal:
            return True
        for nxt in graph.get(current, ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def check_needs(workflow: Workflow) -> Iterator[Problem]:
    """Unknown jobs in ``needs``, dependency cycles, and a workflow with no first job.

    Job ids are matched case-insensitively, as GitHub does.
    """
    ids = {job.id.lower(): job.id for job in workflow.jobs}
    graph = {
        job.id.lower(): [n.text.lower() for n in job.needs if n.text.lower() in ids]
        for job in workflow.jobs
    }
    for job in workflow.jobs:
        for need in job.needs:
            target = need.text.lower()
            if target not in ids:
                message = f"Job '{job.id}' depends on unknown job '{need.text}'."
                yield Problem(need.pos, message, "needs")
            elif _reaches(graph, target, job.id.lower()):
                message = (
                    f"Job '{job.id}' depends on job '{ids[target]}' which creates a cycle "
                    "in the dependency graph."
                )
                yield Problem(need.pos, message, "needs")
    if workflow.jobs and workflow.jobs_node and all(graph.values()):
        message = "The workflow must contain at least one job with no dependencies."
        yield Problem(workflow.jobs_node.pos, message, "needs")


# ---- runners and containers --------------------------------------------------------

_GROUP_PREFIXES = ("organization", "enterprise")


def check_runs_on(job: Job) -> Iterator[Problem]:
    """A runner group name with a ``/`` must be ``organization/NAME`` or ``enterprise/NAME``."""
    group = job.runs_on.get("group") if isinstance(job.runs_on, MappingNode) else None
    if not isinstance(group, ScalarNode) or "${{" in group.text or "/" not in group.text:
        return
    prefix, _, rest = group.text.partition("/")
    if rest and prefix not in _GROUP_PREFIXES:
        message = (
            f"Invalid runs-on group name '{group.text}'. Please use 'organization/' or "
            "'enterprise/' prefix to target a single runner group."
        )
        yield Problem(group.pos, message, "runs-on")
    elif not rest or "/" in rest:
        yield Problem(group.pos, f"Invalid runs-on group name '{group.text}'.", "runs-on")


def _empty_image(node: Node | None) -> ScalarNode | None:
    if isinstance(node, MappingNode):
        node = node.get("image")
    if isinstance(node, ScalarNode) and node.text.strip() == "":
        return node
    return None


def check_containers(job: Job) -> Iterator[Problem]:
    """``container`` and each service need a non-empty image (a missing one is the schema's)."""
    candidates = [job.container]
    if isinstance(job.services, MappingNode):
        candidates += [value for _, value in job.services.pairs]
    for candidate in candidates:
        if (empty := _empty_image(candidate)) is not None:
            yield Problem(empty.pos, "Container image cannot be empty", "container")


def check_matrix(job: Job) -> Iterator[Problem]:
    """Every vector of a literal matrix needs at least one value (``include`` and
    ``exclude`` too). A matrix given as an expression is not looked into."""
    matrix = job.strategy.matrix if job.strategy else None
    for key, value in matrix.pairs if isinstance(matrix, MappingNode) else ():
        if isinstance(value, SequenceNode) and not value.items:
            message = f"Matrix vector '{key.text}' does not contain any values"
            yield Problem(value.pos, message, "matrix")


# ---- expressions -------------------------------------------------------------------

_WF = frozenset({"github", "inputs", "vars"})
_JOB = _WF | {"needs", "strategy", "matrix"}
_CREDENTIALS = _JOB | {"env", "secrets"}
_RUNNER = _JOB | {"job", "runner", "env", "secrets"}
_STEP = _RUNNER | {"steps"}
_STATUS = STATUS_FUNCTIONS
_HASH = frozenset({"hashfiles"})
_RESTRICTED_FUNCTIONS = _STATUS | _HASH


@dataclass(frozen=True, slots=True)
class ContextRule:
    """Which contexts and restricted functions the keys under ``path`` may use."""

    path: tuple[str, ...]
    contexts: frozenset[str]
    functions: frozenset[str] = frozenset()


def _job(
    *rest: str, contexts: frozenset[str], functions: frozenset[str] = frozenset()
) -> ContextRule:
    return ContextRule(("jobs", "*", *rest), contexts, functions)


# GitHub's "context availability" table. The longest matching path wins; keys no rule
# covers are literal to GitHub (``on.push.branches``, ``permissions``), so their text is
# not parsed as expressions at all.
CONTEXT_RULES = (
    ContextRule(("run-name",), _WF),
    ContextRule(("concurrency",), _WF),
    ContextRule(("env",), _WF | {"secrets"}),
    ContextRule(("on", "workflow_call", "inputs", "*", "default"), _WF),
    ContextRule(("on", "workflow_call", "outputs", "*", "value"), _WF | {"jobs"}),
    _job("cancel-timeout-minutes", contexts=_JOB),
    _job("concurrency", contexts=_JOB),
    _job("container", contexts=_JOB),
    _job("container", "credentials", contexts=_CREDENTIALS),
    _job("container", "env", contexts=_RUNNER),
    _job("continue-on-error", contexts=_JOB),
    _job("defaults", "run", contexts=_JOB | {"env"}),
    _job("env", contexts=_JOB | {"secrets"}),
    _job("environment", contexts=_JOB),
    _job("environment", "url", contexts=_JOB | {"job", "runner", "env", "steps"}),
    _job("if", contexts=_WF | {"needs"}, functions=_STATUS),
    _job("name", contexts=_JOB),
    _job("outputs", contexts=_STEP),
    _job("runs-on", contexts=_JOB),
    _job("secrets", contexts=_JOB | {"secrets"}),
    _job("services", contexts=_JOB),
    _job("services", "*", "credentials", contexts=_CREDENTIALS),
    _job("services", "*", "env", contexts=_RUNNER),
    _job("snapshot", contexts=_JOB),
    _job("steps", "*", contexts=_STEP, functions=_HASH),
    _job("steps", "*", "if", contexts=_STEP - {"secrets"}, functions=_STATUS | _HASH),
    _job("strategy", contexts=_WF | {"needs"}),
    _job("timeout-minutes", contexts=_JOB),
    _job("with", contexts=_JOB),
)

_CONDITION_PATHS = (("jobs", "*", "if"), ("jobs", "*", "steps", "*", "if"))
_INSERT = (
    "The directive 'insert' is not allowed in this context. Directives are not supported "
    "for expressions that are embedded within a string. Directives are only supported "
    "when the entire value is an expression."
)


def _matches(pattern: tuple[str, ...], path: tuple[str | int, ...]) -> bool:
    if len(pattern) > len(path):
        return False
    return all(p == "*" or p == item for p, item in zip(pattern, path, strict=False))


def rule_for(path: tuple[str | int, ...]) -> ContextRule | None:
    """The context rule for the value at ``path`` (None: GitHub does not evaluate it)."""
    best: ContextRule | None = None
    for rule in CONTEXT_RULES:
        if _matches(rule.path, path) and (best is None or len(rule.path) > len(best.path)):
            best = rule
    return best


def _is_condition(path: tuple[str | int, ...]) -> bool:
    return any(len(p) == len(path) and _matches(p, path) for p in _CONDITION_PATHS)


def _check_expression(inner: str, rule: ContextRule, pos: Pos) -> Iterator[Problem]:
    for message in expression_messages(inner.strip(), rule):
        yield Problem(pos, message, "expression")


@functools.lru_cache(maxsize=8192)
def expression_messages(source: str, rule: ContextRule) -> tuple[str, ...]:
    """What is wrong with the expression ``source`` under ``rule`` (cached: workflows
    repeat the same few expressions many times)."""
    if not source:
        return ("An expression was expected",)
    try:
        tree = parse(source, allowed_contexts=rule.contexts)
    except ExpressionSyntaxError as exc:
        return (exc.message,)
    messages = []
    for node in walk(tree):
        if isinstance(node, Call) and node.name.lower() in _RESTRICTED_FUNCTIONS - rule.functions:
            messages.append(
                f"Unrecognized function: '{node.name}'. Located at position {node.pos + 1} "
                f"within expression: {source}"
            )
    return tuple(messages)


def _check_template(node: ScalarNode, rule: ContextRule) -> Iterator[Problem]:
    text = node.text
    try:
        spans = find_expressions(text)
    except ExpressionSyntaxError as exc:
        yield Problem(node.pos, exc.message, "expression")
        return
    if len(text) > MAX_LENGTH:
        yield Problem(node.pos, f"Exceeded max expression length {MAX_LENGTH}", "expression")
        return
    whole = len(spans) == 1 and spans[0][0] == 0 and spans[0][1] == len(text)
    for _, _, inner in spans:
        if inner.strip().lower() == "insert":
            if not whole:
                yield Problem(node.pos, _INSERT, "expression")
            continue
        yield from _check_expression(inner, rule, node.pos)


def check_scalar(node: ScalarNode, path: tuple[str | int, ...]) -> Iterator[Problem]:
    """The expression problems of one scalar at ``path`` in the workflow tree."""
    if not isinstance(node.value, str):
        return
    has_expression = "${{" in node.value
    condition = _is_condition(path)
    if not has_expression and not condition:
        return
    rule = rule_for(path)
    if rule is None:
        return
    if condition and not has_expression:
        if node.value.strip():  # an empty `if` is the default condition
            yield from _check_expression(node.value, rule, node.pos)
    else:
        yield from _check_template(node, rule)


def check_expressions(root: Node) -> Iterator[Problem]:
    """Every expression problem in the tree, walking it without recursion."""
    stack: list[tuple[Node, tuple[str | int, ...]]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, ScalarNode):
            yield from check_scalar(node, path)
        elif isinstance(node, SequenceNode):
            stack.extend((item, (*path, i)) for i, item in enumerate(node.items))
        else:
            stack.extend((value, (*path, key.text)) for key, value in node.pairs)


# ---- all together ------------------------------------------------------------------


def validate_workflow(workflow: Workflow) -> list[Problem]:
    """Every semantic problem of one workflow, in file order. Does not look at the
    workflows it calls, and assumes nothing about whether the schema was satisfied."""
    problems = [*check_job_ids(workflow), *check_needs(workflow)]
    for job in workflow.jobs:
        problems += [*check_step_ids(job), *check_runs_on(job), *check_containers(job)]
        problems += check_matrix(job)
    problems += check_expressions(workflow.node)
    return sorted(problems, key=lambda p: (p.pos.line, p.pos.col))
