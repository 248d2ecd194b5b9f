"""Where the action a ``uses:`` step names is: a local one read from the job's workspace
in the VM when the step starts, one in an actions directory, or a remote one (fetched,
or from the cache, by :mod:`vmrunner.runner.remote_actions`); and placing its tree in the
guest, read-only, once per job."""

from __future__ import annotations

import posixpath

from vmrunner.runner import actions
from vmrunner.runner.action_refs import is_remote, parse_remote
from vmrunner.runner.actions import Action, ActionError
from vmrunner.runner.steps import JobState, internal

MAX_ACTION_FILE = 1 << 20
"""Bytes of a local action's ``action.yml`` vmrunner reads."""

# Prints which action file is in directory $1, then the file: exit 3 when $1 is not a
# directory, 4 when it has neither file.
_READ_LOCAL = r"""cd "$1" 2>/dev/null || exit 3
for f in action.yml action.yaml; do
  if [ -f "$f" ]; then echo "$f"; exec head -c "$2" "$f"; fi
done
exit 4
"""


async def find_action(state: JobState, uses: str) -> Action:
    """The action ``uses`` names: a local one read in the guest now, one in an actions
    directory, or a remote one (fetched, or from the cache)."""
    if uses.startswith("docker://"):
        raise actions.docker_error(uses)
    if uses.startswith("./") or uses == ".":
        return await local_action(state, uses)
    in_dir = actions.in_actions_dirs(uses, state.actions_dirs)
    if in_dir is not None:
        return actions.load_action(uses, in_dir)
    if not is_remote(uses):
        raise ActionError(f"The step uses '{uses}', which is not an action reference")
    if state.remote is None:
        parse_remote(uses)  # a malformed reference says so
        raise ActionError(
            f"The action '{uses}' is not in an actions directory and remote actions are not "
            "enabled here"
        )
    return await state.remote.load(uses)


async def local_action(state: JobState, uses: str) -> Action:
    """The action at ``./path`` in the job's workspace in the VM, as it is now."""
    rel = uses[2:].strip("/") if uses.startswith("./") else ""
    guest_dir = posixpath.normpath(f"{state.workspace}/{rel}") if rel else state.workspace
    res = await internal(
        state.guest, f"reading the local action '{uses}' (sh -c)",
        ["sh", "-c", _READ_LOCAL, "sh", guest_dir, str(MAX_ACTION_FILE)], limit=MAX_ACTION_FILE + 64,
    )  # fmt: skip
    if res.status == 3:
        raise ActionError(
            f"The local action '{uses}' was not found: {guest_dir} is not a directory in the "
            "VM (check the repository out, or write the action, in an earlier step)"
        )
    if res.status == 4:
        raise ActionError(
            f"The local action '{uses}' has no action.yml or action.yaml in {guest_dir}"
        )
    if not res.ok:
        raise ActionError(f"The local action '{uses}' cannot be read ({res.status})")
    name, _, text = res.stdout.decode("utf-8", "replace").partition("\n")
    return actions.action_from_text(uses, text, f"{uses}/{name}", guest_dir)


async def place(state: JobState, action: Action) -> str:
    """Where ``action`` is in the guest; its tree is copied in (read-only) the first time."""
    if action.host_dir is None:
        return action.guest_dir
    root = action.host_root or action.host_dir
    guest_root = state.copied_actions.get(str(root))
    if guest_root is None:
        n = len(state.copied_actions) + 1
        name = f"{action.repository}/{action.ref}" if action.repository else f"local/{n}"
        guest_root = f"{state.layout.actions}/{name}"
        parent = posixpath.dirname(guest_root)
        await internal(state.guest, "mkdir for the action", ["mkdir", "-p", parent])
        await state.guest.copy_in(root, guest_root)
        await internal(
            state.guest, "making the action read-only", ["chmod", "-R", "a-w", guest_root]
        )
        state.copied_actions[str(root)] = guest_root
    rel = action.host_dir.relative_to(root).as_posix()
    return guest_root if rel == "." else f"{guest_root}/{rel}"
