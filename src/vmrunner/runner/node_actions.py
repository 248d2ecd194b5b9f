"""JavaScript actions (``runs.using: node12|node16|node20|node24``) run with ``node``.

``main`` runs as the step; ``pre`` runs at the start of the job, as GitHub's runner runs
it: for the job's steps that use a remote or actions-directory action, and for the actions
nested (at any depth) in the remote composite actions they use; not for local actions
(``./path``: not there yet) nor for actions nested in them. ``post`` is registered when
the action's ``pre`` or ``main`` has started (so a step skipped after its pre still gets
its post) and runs at the end of the job, in reverse order of registration, after a
failure or a cancellation too, each under a fresh time limit. ``pre-if`` and ``post-if``
default to ``always()``. The three share ``STATE_*`` (what ``GITHUB_STATE`` and the
deprecated ``::save-state name=X::`` recorded, the file winning); each gets ``INPUT_*``
(``with:`` over the action's defaults), the environment files, ``GITHUB_ACTION_PATH``,
``GITHUB_ACTION_REPOSITORY`` and ``GITHUB_ACTION_REF``.

``node`` is found through the step's ``PATH`` in the guest (the image's, or one an earlier
step put first). Its major version must reach :data:`NODE_MIN` for the action's ``using``:
``node20`` actions are run on Debian 12's node 18 (with a warning), as GitHub runs
``node12`` and ``node16`` actions on a newer node.
"""

from __future__ import annotations

import posixpath
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vmrunner.errors import UserInputError
from vmrunner.results import ErrorEntry, StepEntry
from vmrunner.runner.action_lookup import find_action, place
from vmrunner.runner.action_refs import is_remote
from vmrunner.runner.actions import Action, ActionError
from vmrunner.runner.output import OutputSink
from vmrunner.runner.steps import (
    MAX_ACTION_DEPTH,
    Frame,
    JobState,
    StepRun,
    StepSetupError,
    _contexts,
    _file_env,
    _finish,
    action_inputs,
    exec_step,
    internal,
    with_path,
)
from vmrunner.runner.values import condition, node_value, text_value
from vmrunner.workflow.expressions import to_string
from vmrunner.workflow.loader import Pos, ScalarNode
from vmrunner.workflow.model import Step

NODE_MIN = {"node12": 12, "node16": 16, "node20": 18, "node24": 24}
"""The oldest node major version each ``runs.using`` runs on."""
POST_MINUTES = 5.0
"""The fresh time limit of each ``post`` (and ``pre``) script, in minutes."""
_ALWAYS = ScalarNode("always()", Pos(1, 1))

# Prepares a node script: its env-file directory $1; says where node is, its version
# (the known version $4 when node is the known $3: starting node is slow without KVM),
# and whether the script $2 exists.
_PREP = r"""set -e
mkdir -p "$1"; cd "$1"; : > env; : > output; : > path; : > state; : > summary
node=$(command -v node || command -v nodejs || true)
echo "node=$node"
if [ -n "$node" ] && [ "$node" = "$3" ] && [ -n "$4" ]; then echo "version=$4"
elif [ -n "$node" ]; then echo "version=$("$node" --version 2>/dev/null || true)"; fi
if [ -f "$2" ]; then echo script=ok; else echo script=missing; fi
"""


@dataclass
class NodeRun:
    """One use of a JavaScript action in a job: what its pre, main and post share."""

    action: Action
    guest_dir: str
    inputs: Mapping[str, str]
    step_id: str
    step_key: tuple[int, ...]
    """Where the step is: :attr:`Frame.key` plus its index."""
    frame: Frame
    saved: dict[str, str] = field(default_factory=dict)
    name: str = ""
    started: bool = False
    """Whether a script of it has started (node and the script were found)."""

    def env(self, ctx: Mapping[str, Any]) -> dict[str, str]:
        """The script's environment (without the environment files)."""
        inputs = {f"INPUT_{k.replace(' ', '_').upper()}": v for k, v in self.inputs.items()}
        states = {f"STATE_{k}": v for k, v in self.saved.items()}
        return {
            **ctx["env"], **inputs, **states, "GITHUB_ACTION": self.step_id,
            "GITHUB_ACTION_PATH": self.guest_dir, "GITHUB_ACTION_REPOSITORY": self.action.repository,
            "GITHUB_ACTION_REF": self.action.ref,
        }  # fmt: skip


async def run_main(
    state: JobState, run: NodeRun, ctx: dict[str, Any], sink: OutputSink, minutes: float | None
) -> StepRun:
    """The ``main`` script of ``run`` as the step. Once node and the script are found, its
    ``post`` is registered: it runs at the end of the job even when ``main`` fails."""
    assert run.action.node is not None
    pre: NodeRun | None = state.pre_states.pop(run.step_key, None)
    if pre is not None:
        run.saved = pre.saved  # what main saves reaches the post its pre registered
    try:
        return await run_script(state, run, run.action.node.main, ctx, sink, minutes)
    finally:
        registered = pre is not None and pre.started
        if run.action.node.post and run.started and not registered:
            state.posts.append((run, dict(ctx)))


async def run_script(
    state: JobState, run: NodeRun, script: str, ctx: dict[str, Any], sink: OutputSink,
    minutes: float | None,
) -> StepRun:  # fmt: skip
    """Run one of the action's scripts with node in the guest."""
    assert run.action.node is not None
    n = state.next_id()
    fdir = f"{state.layout.temp}/_runner_file_commands/{n}"
    path = posixpath.normpath(posixpath.join(run.guest_dir, script))
    env = run.env(ctx)
    prep = await internal(
        state.guest, "the node action's preparation (sh -c)",
        ["sh", "-c", _PREP, "sh", fdir, path, *state.node_seen],
        env=with_path(state, {k: v for k, v in env.items() if k == "PATH"}),
    )  # fmt: skip
    if not prep.ok:
        detail = prep.stderr.decode("utf-8", "replace").strip()[-500:]
        raise StepSetupError(
            f"the node action's preparation (sh -c) failed ({prep.status}): {detail}"
        )
    facts = dict(
        line.partition("=")[::2] for line in prep.stdout.decode("utf-8", "replace").splitlines()
    )
    node = check_node(
        run.action, state.image, facts.get("node", ""), facts.get("version", ""), sink
    )
    state.node_seen = (node, facts.get("version", ""))
    if facts.get("script") != "ok":
        raise ActionError(
            f"The action '{run.action.uses}' has no file '{script}' (its runs script) in {run.guest_dir}"
        )
    env.update(_file_env(fdir))
    run.started = True
    from_file: dict[str, str] = {}
    result = await exec_step(
        state, [node, *node_flags(facts.get("version", "")), path], env, state.workspace,
        minutes, sink, fdir, n, from_file,
    )  # fmt: skip
    run.saved.update(sink.states)  # ::save-state:: lines, then the GITHUB_STATE file
    run.saved.update(from_file)
    return result


def node_flags(version: str) -> list[str]:
    """Flags that make an older node run what newer actions expect: node 17-18 get the
    global ``crypto`` (Web Crypto) that node 19+ have, which the official toolkit's Azure
    blob client (``@actions/artifact``, ``@actions/cache``) calls."""
    return ["--experimental-global-webcrypto"] if node_major(version) in (17, 18) else []


def node_major(version: str) -> int | None:
    """The major version of ``node --version`` output (``v18.19.0``), or None."""
    found = re.match(r"\s*v?(\d+)\.", version)
    return int(found[1]) if found else None


def check_node(action: Action, image: str, node: str, version: str, sink: OutputSink) -> str:
    """The guest's node for ``action``; raises :class:`ActionError` when there is none or
    it is older than :data:`NODE_MIN` allows (warns when it is older than asked)."""
    assert action.node is not None
    using = action.node.using
    wanted = int(using.removeprefix("node"))
    major = node_major(version)
    if not node or major is None:
        raise ActionError(
            f"The action '{action.uses}' (runs.using: {using}) needs node, and the VM image "
            f"'{image}' has none on PATH: install nodejs in the image, or set node up in an "
            "earlier step (actions/setup-node)"
        )
    if major < NODE_MIN[using]:
        raise ActionError(
            f"The action '{action.uses}' (runs.using: {using}) needs node {wanted}, and the VM "
            f"image '{image}' has node {version.strip()} ({node}): install node {wanted} or newer "
            "in the image, or put it first on PATH in an earlier step"
        )
    if major < wanted:
        sink.note(
            f"##[warning]{action.uses} asks for {using}; running it on node {version.strip()}"
        )
    return node


async def run_pre_steps(state: JobState, frame: Frame, steps: Sequence[Step]) -> list[StepEntry]:
    """Run, in order, the ``pre`` scripts whose ``pre-if`` holds of the JavaScript actions
    ``steps`` use (remote or from an actions directory, not local ones), and of those
    nested in the composite actions they use, as GitHub's runner does. Each pre that
    started registers its action's ``post`` then, and its ``main`` gets what it saved. An
    action that cannot be found or prepared has no pre: its step reports the error."""
    entries: list[StepEntry] = []
    for step in steps:
        uses = step.uses.text if step.uses is not None else ""
        if not uses or not is_remote(uses):
            continue
        ctx = _contexts(state, frame, {**state.env, **state.file_env, **frame.env})
        try:
            action, inputs = await _pre_use(state, step, uses, ctx)
            key, fx = (*frame.key, step.index), state.functions
            if action.node is not None and action.node.pre:
                if condition(action.node.pre_if or _ALWAYS, ctx, state.status, fx):
                    where = await place(state, action)
                    run = _pre_node_run(state, frame, step, action, inputs, where, key, ctx)
                    entries.append(await _run_pre(state, run, ctx))
            elif action.steps and frame.depth < MAX_ACTION_DEPTH:
                inner = Frame(
                    inputs=inputs, action_path=await place(state, action), env=dict(frame.env),
                    composite=True, depth=frame.depth + 1, label=f"{frame.label}{uses} > ", key=key,
                )  # fmt: skip
                entries += await run_pre_steps(state, inner, action.steps)
        except UserInputError:
            continue
    return entries


async def _pre_use(
    state: JobState, step: Step, uses: str, ctx: dict[str, Any]
) -> tuple[Action, Mapping[str, str]]:
    """The action ``step`` uses and its inputs, as they are at the start of the job."""
    action = await find_action(state, uses)
    given = node_value(step.with_, ctx, state.functions) or {}
    return action, action_inputs(action, {str(k): to_string(v) for k, v in given.items()}, ctx)


def _pre_node_run(
    state: JobState, frame: Frame, step: Step, action: Action, inputs: Mapping[str, str],
    guest_dir: str, key: tuple[int, ...], ctx: dict[str, Any],
) -> NodeRun:  # fmt: skip
    step_id = step.id.text if step.id is not None else f"__step{step.index + 1}"
    run = NodeRun(action, guest_dir, inputs, step_id, key, frame)
    uses = step.uses.text if step.uses is not None else ""
    run.name = text_value(step.name, ctx, functions=state.functions) or f"Run {uses}"
    return run


async def _run_pre(state: JobState, run: NodeRun, ctx: dict[str, Any]) -> StepEntry:
    """Run ``run``'s pre; once it started, its post is registered (it runs at the end of
    the job even when the step's ``main`` is skipped, as on GitHub)."""
    assert run.action.node is not None
    entry = await _phase(state, run, f"Pre {run.name}", run.action.node.pre, ctx)
    state.pre_states[run.step_key] = run
    if run.started and run.action.node.post:
        state.posts.append((run, dict(ctx)))
    return entry


async def run_post_steps(state: JobState) -> list[StepEntry]:
    """Run the registered ``post`` scripts in reverse order, each whose ``post-if`` holds
    (against the job's status now), each under a fresh :data:`POST_MINUTES` limit."""
    deadline, timed_out = state.deadline, state.timed_out
    entries = []
    try:
        while state.posts:
            run, ctx = state.posts.pop()
            assert run.action.node is not None
            ctx = {**ctx, "job": {**ctx.get("job", {}), "status": state.status}}
            state.deadline, state.timed_out = None, False
            if condition(run.action.node.post_if or _ALWAYS, ctx, state.status, state.functions):
                entries.append(
                    await _phase(state, run, f"Post {run.name}", run.action.node.post, ctx)
                )
    finally:
        state.deadline, state.timed_out = deadline, timed_out
    return entries


async def _phase(
    state: JobState, run: NodeRun, name: str, script: str, ctx: dict[str, Any]
) -> StepEntry:
    """A pre or post script as a step entry of its own."""
    label = f"{run.frame.label}{name}"
    state.reporter.step_started(state.key, label)
    state.log.append(f"##[step]{label}")
    sink = OutputSink(state.key, state.masker, state.reporter, state.log, parent=run.frame.sink)
    started = time.monotonic()
    try:
        result = await run_script(state, run, script, ctx, sink, POST_MINUTES)
    except UserInputError as exc:
        sink.note(f"##[error]{exc}")
        state.errors.append(ErrorEntry("step", state.masker.mask_text(str(exc)), state.key, name))
        result = StepRun(ok=False)
    phase_id = f"{name.split()[0].lower()}-{run.step_id}"
    return _finish(state, Frame(), phase_id, name, result, False, sink, time.monotonic() - started)
