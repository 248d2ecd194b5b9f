"""Loading the actions a step ``uses:``, and finding those that live on the host.

An action is a composite action (its steps run in the job) or a JavaScript action
(``runs.using: node12|node16|node20|node24``: its ``main``, ``pre`` and ``post`` scripts
run with ``node`` in the guest). ``actions/checkout`` is built in. Where an action comes
from: ``./path`` is read from the job's workspace in the VM (see
:mod:`vmrunner.runner.remote_actions`); ``owner/repo[/path]@ref`` from a local actions
directory (``DIR/owner/repo@ref/path`` then ``DIR/owner/repo/path``) when it is there,
else from its git repository. Docker actions are an :class:`ActionError` whose message
names the action and what the user can do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from vmrunner.errors import UserInputError
from vmrunner.repopath import is_inside
from vmrunner.workflow.loader import (
    MappingNode,
    Node,
    Pos,
    ScalarNode,
    SequenceNode,
    YamlError,
    load_file,
    load_text,
)
from vmrunner.workflow.model import Step, build_step

_ADVICE = "replace the step with run: steps, or with a composite or JavaScript action"
NODE_VERSIONS = ("node12", "node16", "node20", "node24")
ACTION_FILES = ("action.yml", "action.yaml")


class ActionError(UserInputError):
    """An action vmrunner cannot run."""


@dataclass(frozen=True)
class ActionInput:
    name: str
    default: Node | None
    required: bool


@dataclass(frozen=True)
class NodeRuns:
    """The ``runs:`` of a JavaScript action: scripts relative to the action's directory,
    and the ``pre-if``/``post-if`` conditions (None: ``always()``)."""

    using: str
    main: str
    pre: str = ""
    post: str = ""
    pre_if: Node | None = None
    post_if: Node | None = None


@dataclass(frozen=True)
class Action:
    """An action: where it is (on the host: ``host_dir`` inside the tree ``host_root``
    that is copied into the guest; already in the guest: ``guest_dir``), its inputs and
    outputs, and its composite ``steps`` or its ``node`` scripts. ``repository`` and
    ``ref`` are those of a remote action ("" for others)."""

    uses: str
    host_dir: Path | None
    inputs: tuple[ActionInput, ...]
    outputs: tuple[tuple[str, Node | None], ...]
    steps: tuple[Step, ...] = ()
    node: NodeRuns | None = None
    host_root: Path | None = None
    guest_dir: str = ""
    repository: str = ""
    ref: str = ""


def is_checkout(uses: str) -> bool:
    return uses.split("@", 1)[0].lower() == "actions/checkout"


def docker_error(uses: str) -> ActionError:
    return ActionError(
        f"The step uses the Docker action '{uses}': container actions are not supported yet "
        f"(vmrunner runs jobs in VMs without Docker); {_ADVICE}"
    )


def locate(uses: str, repo_root: Path, actions_dirs: Sequence[Path]) -> Path:
    """The host directory of action ``uses`` (``./path`` in the repository on the host,
    or ``owner/repo[/path]@ref`` in an actions directory); raises :class:`ActionError`."""
    if uses.startswith("docker://"):
        raise docker_error(uses)
    if uses.startswith("./"):
        path = repo_root / uses[2:]
        if not path.is_dir():
            raise ActionError(f"The local action '{uses}' was not found: {path} is not a directory")
        files = [path, path / "action.yml", path / "action.yaml"]
        if not all(is_inside(p, repo_root) for p in files):  # a symlink or '..' leads out
            raise ActionError(
                f"The local action '{uses}' is outside the repository {repo_root}: vmrunner "
                "reads actions of the repository only from inside it"
            )
        return path
    found = in_actions_dirs(uses, actions_dirs)
    if found is None:
        where = ", ".join(str(d) for d in actions_dirs) or "(no actions directory configured)"
        raise ActionError(f"The action '{uses}' is not in an actions directory ({where})")
    return found


def in_actions_dirs(uses: str, actions_dirs: Sequence[Path]) -> Path | None:
    """``owner/repo[/path]@ref`` copied into one of ``actions_dirs``, or None."""
    name, _, ref = uses.partition("@")
    owner_repo = "/".join(name.split("/")[:2])
    sub = "/".join(name.split("/")[2:])
    for base in actions_dirs:
        for candidate in (base / f"{owner_repo}@{ref}" / sub, base / owner_repo / sub):
            if any((candidate / f).is_file() for f in ACTION_FILES):
                return candidate
    return None


def _mapping(node: Node | None) -> MappingNode:
    return node if isinstance(node, MappingNode) else MappingNode((), Pos(1, 1))


def _text(node: Node | None) -> str:
    return node.text if isinstance(node, ScalarNode) else ""


def load_action(uses: str, host_dir: Path, host_root: Path | None = None) -> Action:
    """The action in ``host_dir`` (whose tree, copied into the guest, is ``host_root``:
    ``host_dir`` itself by default); raises :class:`ActionError` for a missing or invalid
    ``action.yml`` and for Docker and unknown actions."""
    file = host_dir / "action.yml"
    if not file.is_file():
        file = host_dir / "action.yaml"
    if not file.is_file():
        raise ActionError(f"The action '{uses}' has no action.yml or action.yaml")
    try:
        root = load_file(file)
    except (OSError, YamlError) as exc:
        raise ActionError(f"The action '{uses}' cannot be read: {exc}") from exc
    action = parse_action(uses, root)
    return replace(action, host_dir=host_dir, host_root=host_root or host_dir)


def action_from_text(uses: str, text: str, filename: str, guest_dir: str) -> Action:
    """The action whose ``action.yml`` is ``text``, already in the guest at ``guest_dir``."""
    try:
        root = load_text(text, filename)
    except YamlError as exc:
        raise ActionError(f"The action '{uses}' cannot be read: {exc}") from exc
    action = parse_action(uses, root)
    return replace(action, guest_dir=guest_dir)


def parse_action(uses: str, root: Node) -> Action:
    """The action described by the parsed ``action.yml`` ``root`` (no location yet)."""
    top = _mapping(root)
    runs = _mapping(top.get("runs"))
    using = _text(runs.get("using")).strip()
    node: NodeRuns | None = None
    steps: tuple[Step, ...] = ()
    if using in NODE_VERSIONS:
        node = _node_runs(uses, using, runs)
    elif using == "composite":
        steps_node = runs.get("steps")
        items = steps_node.items if isinstance(steps_node, SequenceNode) else ()
        steps = tuple(build_step(i, s) for i, s in enumerate(items) if isinstance(s, MappingNode))
    elif using == "docker":
        raise docker_error(uses)
    else:
        raise ActionError(
            f"The action '{uses}' has runs.using: {using or 'missing'}; vmrunner runs "
            f"composite actions and JavaScript actions ({', '.join(NODE_VERSIONS)})"
        )
    inputs = tuple(
        ActionInput(k.text, _mapping(v).get("default"), _is_true(_mapping(v).get("required")))
        for k, v in _mapping(top.get("inputs")).pairs
    )
    outputs = tuple(
        (k.text, _mapping(v).get("value")) for k, v in _mapping(top.get("outputs")).pairs
    )
    return Action(uses, None, inputs, outputs, steps, node)


def _is_true(node: Node | None) -> bool:
    value = getattr(node, "value", False)
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _node_runs(uses: str, using: str, runs: MappingNode) -> NodeRuns:
    main = _text(runs.get("main")).strip()
    if not main:
        raise ActionError(f"The action '{uses}' (runs.using: {using}) has no runs.main")
    return NodeRuns(
        using, main, _text(runs.get("pre")).strip(), _text(runs.get("post")).strip(),
        runs.get("pre-if"), runs.get("post-if"),
    )  # fmt: skip
