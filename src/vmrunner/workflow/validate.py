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

from vmrunner.workflow.cron import INVALID_CRON, is_valid_cron
from vmrunner.workflow.expressions import (
    MAX_LENGTH,
    STATUS_FUNCTIONS,
    ExpressionSyntaxError,
    find_expressions,
    parse,
    walk,
)
from vmrunner.workflow.expressions.nodes import Call
from vmrunner.workflow.loader import MappingNode, Node, Pos, ScalarNode, ScalarStyle, SequenceNode
from vmrunner.workflow.model import Job, Workflow
from vmrunner.workflow.schema.template import is_expression


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
    """Unknown jobs in ``needs``, dependency cycles, and a workflow with no first job
    (no job without ``needs``, known jobs or not: GitHub counts them all).

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
    jobs_node = workflow.jobs_node
    if jobs_node is None:
        return
    if not jobs_node.pairs or (workflow.jobs and all(job.needs for job in workflow.jobs)):
        message = "The workflow must contain at least one job with no dependencies."
        yield Problem(jobs_node.pos, message, "needs")


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


def _empty_image(node: Node | None) -> Node | None:
    """The node to blame when ``node`` (a container) has no image: the empty image, or
    the mapping that lacks one (an expression stands for the whole container)."""
    if isinstance(node, MappingNode) and not any(is_expression(k.value) for k, _ in node.pairs):
        image = node.get("image")
        if image is None:
            return node
        if isinstance(image, ScalarNode) and image.text == "":
            return None  # the schema's: an image is a non-empty string
        node = image
    if isinstance(node, ScalarNode) and node.text.strip() == "":
        return node
    return None


def check_containers(job: Job) -> Iterator[Problem]:
    """``container`` and each service need a non-empty image."""
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


# ---- events and called workflows ----------------------------------------------------

_FILTERS = ("branches", "tags", "paths")


def check_event_filters(workflow: Workflow) -> Iterator[Problem]:
    """An event may not give a filter and its ``-ignore`` form both (GitHub's server
    refuses it; its template schema cannot say so)."""
    on = workflow.node.get("on") if isinstance(workflow.node, MappingNode) else None
    for _, config in on.pairs if isinstance(on, MappingNode) else ():
        if not isinstance(config, MappingNode):
            continue
        for name in _FILTERS:
            ignore = config.key_node(f"{name}-ignore")
            if name in config and ignore is not None:
                message = f"'{name}' and '{name}-ignore' cannot be used together"
                yield Problem(ignore.pos, message, "on")


def check_schedule(workflow: Workflow) -> Iterator[Problem]:
    """Every ``on.schedule`` cron must be valid cron syntax (:mod:`.cron`)."""
    on = workflow.node.get("on") if isinstance(workflow.node, MappingNode) else None
    schedule = on.get("schedule") if isinstance(on, MappingNode) else None
    for entry in schedule.items if isinstance(schedule, SequenceNode) else ():
        cron = entry.get("cron") if isinstance(entry, MappingNode) else None
        text = cron.value if isinstance(cron, ScalarNode) else None
        if isinstance(cron, ScalarNode) and isinstance(text, str) and not is_valid_cron(text):
            yield Problem(cron.pos, INVALID_CRON, "on")


_WORKFLOW_REF = re.compile(r"(\./|\$/).+\.ya?ml(@.+)?\Z|[^/@]+/[^/@]+/.+\.ya?ml@.+\Z")


def check_workflow_ref(job: Job) -> Iterator[Problem]:
    """A job's ``uses`` must name a workflow file: ``./PATH.yml`` or ``OWNER/REPO/PATH.yml@REF``."""
    uses = job.uses
    if uses is None or is_expression(uses.value) or _WORKFLOW_REF.match(uses.text):
        return
    message = (
        f"Invalid workflow reference '{uses.text}': expected "
        "'./.github/workflows/FILE.yml' or 'OWNER/REPO/.github/workflows/FILE.yml@REF'"
    )
    yield Problem(uses.pos, message, "reusable-workflow")


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


@dataclass
class _Trie:
    """The rule paths as a tree of segments (``*`` is a segment of its own)."""

    children: dict[str | int, _Trie]
    rule: tuple[int, ContextRule] | None = None  # (its index in CONTEXT_RULES, the rule)


@functools.cache
def _rules() -> _Trie:
    root = _Trie({})
    for index, rule in enumerate(CONTEXT_RULES):
        node = root
        for part in rule.path:
            node = node.children.setdefault(part, _Trie({}))
        node.rule = (index, rule)
    return root


def rule_for(path: tuple[str | int, ...]) -> ContextRule | None:
    """The context rule for the value at ``path`` (None: GitHub does not evaluate it):
    of the rules whose pattern matches a prefix of ``path``, the longest (the first in
    :data:`CONTEXT_RULES` among equally long ones). Walks a trie: this runs for every
    scalar that holds an expression."""
    best: tuple[int, int, ContextRule] | None = None  # (length, -index, rule)
    frontier = [(_rules(), 0)]
    while frontier:
        node, depth = frontier.pop()
        if node.rule is not None and (best is None or (depth, -node.rule[0]) > best[:2]):
            best = (depth, -node.rule[0], node.rule[1])
        if depth < len(path):
            for key in {path[depth], "*"}:
                if (child := node.children.get(key)) is not None:
                    frontier.append((child, depth + 1))
    return best[2] if best is not None else None


def _is_condition(path: tuple[str | int, ...]) -> bool:
    if not path or path[-1] != "if":  # every condition path ends in `if`
        return False
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


_QUOTED = (ScalarStyle.SINGLE_QUOTED, ScalarStyle.DOUBLE_QUOTED)


def expression_pos(node: ScalarNode, start: int) -> Pos:
    """Where the ``${{`` at ``start`` in ``node``'s text is, as GitHub's parser says:
    on one line, its own column (past an opening quote); in a block scalar (``|``), the
    line it is on (the column stays the scalar's: the indentation is not kept)."""
    text = node.text
    if "\n" not in text[:start] and node.style not in (ScalarStyle.LITERAL, ScalarStyle.FOLDED):
        return Pos(node.pos.line, node.pos.col + start + (1 if node.style in _QUOTED else 0))
    if node.style in (ScalarStyle.LITERAL, ScalarStyle.FOLDED):
        return Pos(node.pos.line + 1 + text[:start].count("\n"), node.pos.col)
    return node.pos


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
    for start, _, inner in spans:
        if inner.strip().lower() == "insert":
            if not whole:
                yield Problem(node.pos, _INSERT, "expression")
            continue
        yield from _check_expression(inner, rule, expression_pos(node, start))


def _unclosed(node: ScalarNode) -> Iterator[Problem]:
    try:
        find_expressions(node.text)
    except ExpressionSyntaxError as exc:
        yield Problem(node.pos, exc.message, "expression")


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
        # GitHub reads no expression here, but still refuses an unclosed one
        if has_expression:
            yield from _unclosed(node)
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
    problems = [*check_job_ids(workflow), *check_needs(workflow), *check_event_filters(workflow)]
    problems += check_schedule(workflow)
    for job in workflow.jobs:
        problems += [*check_step_ids(job), *check_runs_on(job), *check_containers(job)]
        problems += [*check_matrix(job), *check_workflow_ref(job)]
    problems += check_expressions(workflow.node)
    return sorted(problems, key=lambda p: (p.pos.line, p.pos.col))
