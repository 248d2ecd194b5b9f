"""Commands for coding agents: ``vmrunner mcp`` (the MCP server over stdio) and
``vmrunner init github`` (the workflows and MCP configuration that set a repository up
for the GitHub Copilot coding agent)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from vmrunner.errors import VmrunnerError

init_app = typer.Typer(help="Set a repository up for vmrunner.", no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
FLAVORS = ("debian", "nixos")
WORKFLOWS = ("copilot-setup-steps.yml", "vm-test.yml")


def mcp_command(
    root: Annotated[
        Path, typer.Option("--dir", help="The repository the tools' paths are relative to.")
    ] = Path(),
    max_bytes: Annotated[
        int, typer.Option("--max-bytes", min=4096, help="Bound of each tool result, in bytes.")
    ] = 16384,
) -> None:
    """Serve vmrunner's tools to coding agents over the Model Context Protocol (stdio)."""
    from vmrunner.cli_base import _fail, _settings
    from vmrunner.mcp.server import serve_stdio

    try:
        serve_stdio(_settings(), root, max_bytes)
    except VmrunnerError as exc:
        raise _fail(exc) from exc


def render_template(name: str, flavor: str, config: str) -> str:
    """Workflow template ``name`` for ``flavor``: ``#@nixos`` ... ``#@end`` blocks kept
    (without the markers) only for NixOS; ``@CONFIG@`` replaced by the systest arguments."""
    from importlib.resources import files

    text = (files("vmrunner.templates") / "github" / name).read_text()
    lines, keep = [], True
    for line in text.splitlines(keepends=True):
        if line.strip() in ("#@nixos", "#@end"):
            keep = line.strip() == "#@end" or flavor == "nixos"
            continue
        if keep:
            lines.append(line)
    return "".join(lines).replace("@CONFIG@", config)


def mcp_config(command: str = "vmrunner") -> dict[str, object]:
    """The MCP configuration for a repository's Copilot coding agent settings."""
    return {"mcpServers": {"vmrunner": {"type": "local", "command": command, "args": ["mcp"],
                                        "tools": ["*"]}}}  # fmt: skip


def _systest_args(flavor: str, config: str | None, host: str | None) -> str:
    if flavor == "nixos":
        return f"{config or '.'} --flavor nixos --host {host or 'vm'}"
    return config or "systest.yml"


@init_app.command("github")
def init_github(
    root: Annotated[Path, typer.Option("--dir", help="The repository to write into.")] = Path(),
    flavor: Annotated[str, typer.Option(help="debian or nixos.")] = "debian",
    config: Annotated[
        str | None,
        typer.Option(help="What vm-test.yml tests: a recipe file (debian, default systest.yml) "
                     "or a flake reference (nixos, default '.')."),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="nixosConfigurations attribute (nixos; default vm).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite files that exist.")] = False,
) -> None:  # fmt: skip
    """Write .github/workflows/copilot-setup-steps.yml and vm-test.yml (never over an
    existing file unless --force), then print the MCP configuration for the repository's
    Copilot coding agent settings."""
    if flavor not in FLAVORS:
        raise typer.BadParameter(f"--flavor must be debian or nixos, got {flavor!r}")
    target = root / ".github" / "workflows"
    existing = [n for n in WORKFLOWS if (target / n).exists()]
    if existing and not force:
        err.print(f"vmrunner: {', '.join(str(target / n) for n in existing)} exists "
                  "(use --force to overwrite); nothing written", markup=False)  # fmt: skip
        raise typer.Exit(1)
    target.mkdir(parents=True, exist_ok=True)
    args = _systest_args(flavor, config, host)
    for name in WORKFLOWS:
        (target / name).write_text(render_template(name, flavor, args))
        out.print(f"wrote {target / name}", markup=False)
    out.print("\nAdd this MCP configuration in the repository's settings (Copilot > Coding "
              "agent > MCP configuration):\n", markup=False)  # fmt: skip
    print(json.dumps(mcp_config(), indent=2))
