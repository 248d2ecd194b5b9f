"""A ``uses:`` step: which action it names, where that action is, and running it.

``actions/checkout`` is built in; ``./path`` is read from the job's workspace in the VM
when the step starts; ``owner/repo[/path]@ref`` comes from a local actions directory or
its repository (:mod:`vmrunner.runner.remote_actions`) and its tree is copied into the
guest once per job, read-only, under the runner's ``_actions`` directory. A composite
action's steps run in this job; a JavaScript action runs with ``node``
(:mod:`vmrunner.runner.node_actions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from vmrunner.runner import actions, node_actions
from vmrunner.runner.action_lookup import find_action, place
from vmrunner.runner.actions import Action, ActionError
from vmrunner.runner.output import OutputSink
from vmrunner.runner.steps import (
    MAX_ACTION_DEPTH,
    Frame,
    JobState,
    StepRun,
    action_inputs,
    checkout,
    run_composite,
)
from vmrunner.runner.values import node_value, text_value
from vmrunner.workflow.expressions import to_string
from vmrunner.workflow.model import Step


async def run_uses(
    state: JobState, frame: Frame, step: Step, ctx: dict[str, Any], step_env: dict[str, str],
    sink: OutputSink, minutes: float | None, step_id: str,
) -> StepRun:  # fmt: skip
    """Run the ``uses:`` step ``step``; bad input is an :class:`ActionError`."""
    assert step.uses is not None
    uses = step.uses.text
    given = node_value(step.with_, ctx, state.functions) or {}
    with_ = {str(k): to_string(v) for k, v in given.items()}
    if actions.is_checkout(uses):
        return await checkout(state, with_, sink)
    if frame.depth >= MAX_ACTION_DEPTH:
        raise ActionError(f"composite actions nest more than {MAX_ACTION_DEPTH} levels at '{uses}'")
    action = await find_action(state, uses)
    _warn_unexpected(action, with_, sink)
    inputs = action_inputs(action, with_, ctx)
    guest_dir = await place(state, action)
    key = (*frame.key, step.index)
    if action.node is not None:
        run = node_actions.NodeRun(action, guest_dir, inputs, step_id, key, frame)
        run.name = text_value(step.name, ctx, functions=state.functions) or f"Run {uses}"
        return await node_actions.run_main(state, run, ctx, sink, minutes)
    outer = replace(frame, key=key)  # its steps' pre states are found under this key
    return await run_composite(
        state, outer, action, ctx, inputs, guest_dir, step_env, minutes, sink
    )


def _warn_unexpected(action: Action, with_: Mapping[str, str], sink: OutputSink) -> None:
    """GitHub's warning for ``with:`` keys the action does not declare."""
    known = {i.name.lower() for i in action.inputs}
    unexpected = [k for k in with_ if k.lower() not in known]
    if unexpected:
        valid = ", ".join(repr(i.name) for i in action.inputs)
        names = ", ".join(repr(k) for k in unexpected)
        sink.note(f"##[warning]Unexpected input(s) {names}, valid inputs are [{valid}]")
