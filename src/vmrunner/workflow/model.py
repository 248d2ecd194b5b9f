"""The typed workflow model: frozen dataclasses built from a loaded tree.

Nothing here is evaluated. A value GitHub evaluates at run time (anything that may hold
``${{ }}``: ``if``, ``runs-on``, ``env``, ``with``, ``strategy.matrix``, ...) is kept as
the loader node itself, so it keeps its raw text, its structure and its position. Values
that are always literal (job ids, ``needs``, event names, ``uses``) are plain strings
beside the node that holds their position.

:func:`build_workflow` is total: given any tree, even one that failed schema validation,
it returns a :class:`Workflow`, leaving out what does not have the expected shape, so
the semantic checks can still run. It does not validate anything itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmrunner.workflow.loader import MappingNode, Node, Pos, ScalarNode, SequenceNode

LEVELS = ("none", "read", "write")

# Every permission scope, in the order GitHub lists them in its messages.
SCOPES = (
    "actions",
    "checks",
    "contents",
    "deployments",
    "discussions",
    "issues",
    "packages",
    "pages",
    "pull-requests",
    "repository-projects",
    "statuses",
    "security-events",
    "id-token",
    "attestations",
    "models",
)
# Scopes whose highest level is below "write".
_CEILING = {"models": "read", "id-token": "write"}
# Scopes "read-all" leaves at none (they have no read level).
_NO_READ = {"id-token"}


def _mapping(node: Node | None) -> MappingNode | None:
    return node if isinstance(node, MappingNode) else None


def _scalar(node: Node | None) -> ScalarNode | None:
    return node if isinstance(node, ScalarNode) else None


def _text(node: Node | None) -> str | None:
    return node.text if isinstance(node, ScalarNode) else None


def _strings(node: Node | None) -> tuple[ScalarNode, ...]:
    """A scalar or a sequence of scalars, as a tuple of scalars (others are dropped)."""
    if isinstance(node, ScalarNode):
        return (node,) if node.value is not None else ()
    if isinstance(node, SequenceNode):
        return tuple(item for item in node.items if isinstance(item, ScalarNode))
    return ()


@dataclass(frozen=True)
class Permissions:
    """A ``permissions:`` value: ``read-all``/``write-all`` or a scope-to-level mapping.

    Scopes a mapping leaves out are ``none`` (GitHub's rule); ``{}`` is all ``none``.
    """

    pos: Pos
    preset: str | None
    scopes: tuple[tuple[str, str], ...] = ()

    def level(self, scope: str) -> str:
        """The effective level of ``scope``: ``none``, ``read`` or ``write``."""
        if self.preset == "write-all":
            return _CEILING.get(scope, "write")
        if self.preset == "read-all":
            return "none" if scope in _NO_READ else "read"
        level = dict(self.scopes).get(scope, "none")
        return level if level in LEVELS else "none"  # the schema reports bad levels

    def levels(self) -> dict[str, str]:
        """Every known scope's effective level, in :data:`SCOPES` order."""
        return {scope: self.level(scope) for scope in SCOPES}


def build_permissions(node: Node | None) -> Permissions | None:
    """The permissions in ``node``, or None when absent or of no recognisable shape."""
    if isinstance(node, ScalarNode) and node.text in ("read-all", "write-all"):
        return Permissions(node.pos, node.text)
    if isinstance(node, MappingNode):
        scopes = tuple((k.text, v.text) for k, v in node.pairs if isinstance(v, ScalarNode))
        return Permissions(node.pos, None, scopes)
    return None


@dataclass(frozen=True)
class Concurrency:
    """``concurrency:``: a group (string form or ``group:``) and ``cancel-in-progress``."""

    pos: Pos
    group: Node | None
    cancel_in_progress: Node | None = None


def build_concurrency(node: Node | None) -> Concurrency | None:
    if isinstance(node, ScalarNode):
        return Concurrency(node.pos, node)
    if isinstance(node, MappingNode):
        return Concurrency(node.pos, node.get("group"), node.get("cancel-in-progress"))
    return None


@dataclass(frozen=True)
class Defaults:
    """``defaults.run``: the default ``shell`` and ``working-directory`` of run steps."""

    pos: Pos
    shell: Node | None
    working_directory: Node | None


def build_defaults(node: Node | None) -> Defaults | None:
    run = _mapping(node.get("run")) if isinstance(node, MappingNode) else None
    if run is None:
        return None
    return Defaults(run.pos, run.get("shell"), run.get("working-directory"))


@dataclass(frozen=True)
class Strategy:
    """``strategy:``: the matrix (a mapping or an expression), fail-fast, max-parallel."""

    pos: Pos
    matrix: Node | None
    fail_fast: Node | None
    max_parallel: Node | None


def build_strategy(node: Node | None) -> Strategy | None:
    if not isinstance(node, MappingNode):
        return None
    return Strategy(node.pos, node.get("matrix"), node.get("fail-fast"), node.get("max-parallel"))


@dataclass(frozen=True)
class Step:
    """One step. ``index`` is its 0-based place in the job."""

    index: int
    node: MappingNode
    id: ScalarNode | None
    name: Node | None
    if_: Node | None
    uses: ScalarNode | None
    run: Node | None
    shell: Node | None
    working_directory: Node | None
    with_: Node | None
    env: Node | None
    continue_on_error: Node | None
    timeout_minutes: Node | None

    @property
    def pos(self) -> Pos:
        return self.node.pos


def build_step(index: int, node: MappingNode) -> Step:
    g = node.get
    return Step(
        index, node, _scalar(g("id")), g("name"), g("if"), _scalar(g("uses")), g("run"),
        g("shell"), g("working-directory"), g("with"), g("env"), g("continue-on-error"),
        g("timeout-minutes"),
    )  # fmt: skip


@dataclass(frozen=True)
class Job:
    """One job: a normal job (``runs-on`` and ``steps``) or a reusable-workflow call
    (``uses``). ``pos`` is the position of the job id."""

    id: str
    pos: Pos
    node: MappingNode
    name: Node | None
    needs: tuple[ScalarNode, ...]
    if_: Node | None
    runs_on: Node | None
    uses: ScalarNode | None
    with_: Node | None
    secrets: Node | None
    strategy: Strategy | None
    env: Node | None
    defaults: Defaults | None
    concurrency: Concurrency | None
    permissions: Permissions | None
    timeout_minutes: Node | None
    continue_on_error: Node | None
    container: Node | None
    services: Node | None
    outputs: Node | None
    environment: Node | None
    steps: tuple[Step, ...]

    @property
    def is_reusable_call(self) -> bool:
        """True for ``uses:`` jobs that run another workflow."""
        return self.uses is not None

    @property
    def display_name(self) -> str:
        """The literal ``name:`` if there is one, else the id."""
        return _text(self.name) or self.id


def build_job(key: ScalarNode, node: MappingNode) -> Job:
    g = node.get
    steps_node = g("steps")
    steps: tuple[Step, ...] = ()
    if isinstance(steps_node, SequenceNode):
        steps = tuple(
            build_step(i, s) for i, s in enumerate(steps_node.items) if isinstance(s, MappingNode)
        )
    return Job(
        key.text, key.pos, node, g("name"), _strings(g("needs")), g("if"), g("runs-on"),
        _scalar(g("uses")), g("with"), g("secrets"), build_strategy(g("strategy")), g("env"),
        build_defaults(g("defaults")), build_concurrency(g("concurrency")),
        build_permissions(g("permissions")), g("timeout-minutes"), g("continue-on-error"),
        g("container"), g("services"), g("outputs"), g("environment"), steps,
    )  # fmt: skip


@dataclass(frozen=True)
class Event:
    """One trigger under ``on:``. ``node`` is its value (None for ``on: push`` or
    ``on: [push]``); ``config`` is that value when it is a mapping."""

    name: str
    pos: Pos
    node: Node | None = None

    @property
    def config(self) -> MappingNode | None:
        return _mapping(self.node)

    def filter(self, key: str) -> tuple[str, ...] | None:
        """A filter list (``branches``, ``tags-ignore``, ``paths``, ``types``, ...) as
        strings, or None when the event does not set it."""
        node = self.config.get(key) if self.config else None
        if node is None:
            return None
        return tuple(s.text for s in _strings(node))


@dataclass(frozen=True)
class Input:
    """An input of ``workflow_call`` or ``workflow_dispatch``."""

    name: str
    pos: Pos
    type: str
    required: bool
    default: Node | None
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class Secret:
    """A secret declared by ``workflow_call``."""

    name: str
    pos: Pos
    required: bool


def _pairs(node: Node | None) -> tuple[tuple[ScalarNode, Node], ...]:
    return node.pairs if isinstance(node, MappingNode) else ()


def _inputs(node: Node | None) -> tuple[Input, ...]:
    out = []
    for key, spec in _pairs(node):
        conf = _mapping(spec) or MappingNode((), key.pos)
        get = conf.get
        options = tuple(s.text for s in _strings(get("options")))
        required = _scalar(get("required"))
        out.append(
            Input(key.text, key.pos, _text(get("type")) or "string",
                  bool(required and required.value is True), get("default"), options)
        )  # fmt: skip
    return tuple(out)


def _secrets(node: Node | None) -> tuple[Secret, ...]:
    out = []
    for key, spec in _pairs(node):
        required = _scalar(spec.get("required")) if isinstance(spec, MappingNode) else None
        out.append(Secret(key.text, key.pos, bool(required and required.value is True)))
    return tuple(out)


@dataclass(frozen=True)
class Triggers:
    """Everything under ``on:``, in file order."""

    pos: Pos
    events: tuple[Event, ...]

    def get(self, name: str) -> Event | None:
        return next((e for e in self.events if e.name == name), None)

    def inputs(self, event: str) -> tuple[Input, ...]:
        """The declared inputs of ``workflow_call`` or ``workflow_dispatch``."""
        found = self.get(event)
        return _inputs(found.config.get("inputs")) if found and found.config else ()

    def call_secrets(self) -> tuple[Secret, ...]:
        """The secrets ``workflow_call`` declares."""
        found = self.get("workflow_call")
        return _secrets(found.config.get("secrets")) if found and found.config else ()

    def schedules(self) -> tuple[ScalarNode, ...]:
        """The ``cron`` strings of ``schedule``."""
        found = self.get("schedule")
        items = found.node.items if found and isinstance(found.node, SequenceNode) else ()
        crons = (_scalar(item.get("cron")) for item in items if isinstance(item, MappingNode))
        return tuple(c for c in crons if c is not None)


def build_triggers(node: Node | None, pos: Pos) -> Triggers:
    if isinstance(node, ScalarNode | SequenceNode):
        return Triggers(node.pos, tuple(Event(s.text, s.pos) for s in _strings(node)))
    if isinstance(node, MappingNode):
        events = tuple(Event(k.text, k.pos, v) for k, v in node.pairs)
        return Triggers(node.pos, events)
    return Triggers(pos, ())


@dataclass(frozen=True)
class Workflow:
    """A whole workflow file."""

    node: MappingNode
    name: Node | None
    run_name: Node | None
    on: Triggers
    env: Node | None
    defaults: Defaults | None
    concurrency: Concurrency | None
    permissions: Permissions | None
    jobs: tuple[Job, ...]
    jobs_node: MappingNode | None

    def job(self, job_id: str) -> Job | None:
        return next((j for j in self.jobs if j.id == job_id), None)


def build_workflow(root: Node) -> Workflow | None:
    """The model of a loaded tree, or None when the root is not a mapping."""
    if not isinstance(root, MappingNode):
        return None
    jobs_node = _mapping(root.get("jobs"))
    jobs: tuple[Job, ...] = ()
    if jobs_node is not None:
        jobs = tuple(build_job(k, v) for k, v in jobs_node.pairs if isinstance(v, MappingNode))
    return Workflow(
        root, root.get("name"), root.get("run-name"), build_triggers(root.get("on"), root.pos),
        root.get("env"), build_defaults(root.get("defaults")),
        build_concurrency(root.get("concurrency")), build_permissions(root.get("permissions")),
        jobs, jobs_node,
    )  # fmt: skip
