"""The part of a VM the runner uses, and the shell templates of ``run:`` steps.

:class:`Guest` is satisfied by :class:`vmrunner.vm.qemu.QemuMachine`; tests pass fakes.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from vmrunner.errors import UserInputError
from vmrunner.vm.machine import CommandResult, ExecOptions


class Guest(Protocol):
    async def execute(
        self, argv: Sequence[str], opts: ExecOptions | None = None
    ) -> CommandResult: ...
    async def copy_in(self, host_src: Path, guest_dst: str, timeout: float = 300.0) -> None: ...
    async def copy_out(
        self, guest_src: str, host_dst: Path, timeout: float = 300.0, max_bytes: int | None = None
    ) -> None: ...


class MachineFactory(Protocol):
    """Gives a fresh, running VM of ``image`` for an ``async with`` block. ``accel``
    tells afterwards which accelerator the VMs used (None before the first)."""

    accel: str | None

    def __call__(self, image: str, name: str) -> AbstractAsyncContextManager[Guest]: ...


class ShellError(UserInputError):
    """A ``shell:`` that cannot be used."""


@dataclass(frozen=True)
class Shell:
    """A shell template: ``argv`` with ``{0}`` where the script file goes."""

    name: str
    argv: tuple[str, ...]
    extension: str

    def command(self, script: str) -> list[str]:
        return [a.replace("{0}", script) for a in self.argv]


_BUILTIN = {
    "bash": ("bash --noprofile --norc -eo pipefail {0}", ".sh"),
    "sh": ("sh -e {0}", ".sh"),
    "python": ("python {0}", ".py"),
    "pwsh": ("pwsh -command . '{0}'", ".ps1"),
}


def resolve_shell(shell: str | None) -> Shell:
    """The template of ``shell:`` (None: GitHub's default ``bash -e {0}``). Raises
    :class:`ShellError` for Windows shells and custom templates without ``{0}``."""
    if shell is None or not shell.strip():
        return Shell("bash", ("bash", "-e", "{0}"), ".sh")
    name = shell.strip()
    if name in _BUILTIN:
        template, ext = _BUILTIN[name]
        return Shell(name, tuple(shlex.split(template)), ext)
    if name in ("powershell", "cmd"):
        raise ShellError(
            f"shell '{name}' exists only on Windows runners; use bash, sh, python or pwsh"
        )
    if "{0}" not in name:
        raise ShellError(
            f"shell '{name}' is neither bash, sh, python nor pwsh, and a custom shell "
            "must contain '{0}' where the script file goes (e.g. 'perl {0}')"
        )
    return Shell(name, tuple(shlex.split(name)), "")
