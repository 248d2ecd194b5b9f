"""Finding and loading the actions a step ``uses:``.

Supported: ``actions/checkout`` (any version; built in), local composite actions
(``./path``, read from the repository on the host) and composite actions copied into a
local actions directory (``owner/repo[/path]@ref`` is looked up as
``DIR/owner/repo@ref/path`` then ``DIR/owner/repo/path``). Everything else is an
:class:`ActionError` whose message names the action and what the user can do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vmrunner.errors import UserInputError
from vmrunner.repopath import is_inside
from vmrunner.workflow.loader import MappingNode, Node, Pos, SequenceNode, YamlError, load_file
from vmrunner.workflow.model import Step, build_step

_ADVICE = "replace the step with run: steps, or with a composite action"


class ActionError(UserInputError):
    """An action vmrunner cannot run."""


@dataclass(frozen=True)
class ActionInput:
    name: str
    default: Node | None
    required: bool


@dataclass(frozen=True)
class Action:
    """A composite action: where it is on the host, its inputs, outputs and steps."""

    uses: str
    host_dir: Path
    inputs: tuple[ActionInput, ...]
    outputs: tuple[tuple[str, Node | None], ...]
    steps: tuple[Step, ...]


def is_checkout(uses: str) -> bool:
    return uses.split("@", 1)[0].lower() == "actions/checkout"


def locate(uses: str, repo_root: Path, actions_dirs: Sequence[Path]) -> Path:
    """The host directory of action ``uses``; raises :class:`ActionError`."""
    if uses.startswith("docker://"):
        raise ActionError(
            f"The step uses the Docker action '{uses}': vmrunner runs jobs in VMs without "
            f"Docker; {_ADVICE}"
        )
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
    name, _, ref = uses.partition("@")
    owner_repo = "/".join(name.split("/")[:2])
    sub = "/".join(name.split("/")[2:])
    for base in actions_dirs:
        for candidate in (base / f"{owner_repo}@{ref}" / sub, base / owner_repo / sub):
            if (candidate / "action.yml").is_file() or (candidate / "action.yaml").is_file():
                return candidate
    where = ", ".join(str(d) for d in actions_dirs) or "(no actions directory configured)"
    raise ActionError(
        f"The action '{uses}' is not available locally (vmrunner never downloads actions). "
        f"Copy it into an actions directory ({where}) as {owner_repo}/{sub or ''} "
        f"(composite actions only), or {_ADVICE}"
    )


def _mapping(node: Node | None) -> MappingNode:
    return node if isinstance(node, MappingNode) else MappingNode((), Pos(1, 1))


def load_action(uses: str, host_dir: Path) -> Action:
    """The composite action in ``host_dir``; raises :class:`ActionError` for a missing or
    invalid ``action.yml`` and for JavaScript and Docker actions."""
    file = host_dir / "action.yml"
    if not file.is_file():
        file = host_dir / "action.yaml"
    try:
        root = load_file(file)
    except (OSError, YamlError) as exc:
        raise ActionError(f"The action '{uses}' cannot be read: {exc}") from exc
    top = _mapping(root)
    runs = _mapping(top.get("runs"))
    using_node = runs.get("using")
    using = str(getattr(using_node, "value", "") or "")
    if using != "composite":
        what = (
            "a Docker"
            if using == "docker"
            else "a JavaScript"
            if using.startswith("node")
            else "an unsupported"
        )
        raise ActionError(
            f"The action '{uses}' is {what} action (runs.using: {using or 'missing'}); "
            f"vmrunner runs only composite actions: {_ADVICE}"
        )
    inputs = tuple(
        ActionInput(
            k.text,
            _mapping(v).get("default"),
            getattr(_mapping(v).get("required"), "value", False) is True,
        )
        for k, v in _mapping(top.get("inputs")).pairs
    )
    outputs = tuple(
        (k.text, _mapping(v).get("value")) for k, v in _mapping(top.get("outputs")).pairs
    )
    steps_node = runs.get("steps")
    items = steps_node.items if isinstance(steps_node, SequenceNode) else ()
    steps = tuple(build_step(i, s) for i, s in enumerate(items) if isinstance(s, MappingNode))
    return Action(uses, host_dir, inputs, outputs, steps)
