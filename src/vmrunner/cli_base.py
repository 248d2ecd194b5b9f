"""What every ``vmrunner`` command module shares: the consoles, the settings, the service
layer (with start-up reaping), error reporting and running a coroutine with signals.

Exit statuses: 125 when vmrunner itself failed or was given bad input, 130 after
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from vmrunner.config import Settings, load_settings
from vmrunner.errors import VmrunnerError

if TYPE_CHECKING:
    from vmrunner.services.core import Services

HARNESS_EXIT = 125
T = TypeVar("T")


def make_console(*, stderr: bool = False) -> Console:
    """A console that prints text as it is: no markup, no emoji codes (``:v:``), no
    highlighting, no wrapping (and no width limit when not a terminal, so that
    ``FILE:LINE:COL`` lines stay whole for grep); colour only on a terminal, none with
    ``NO_COLOR``. Style things with ``style=`` or :class:`rich.text.Text`, never markup."""
    console = Console(stderr=stderr, highlight=False, markup=False, emoji=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = 1_000_000
    return console


err_console = make_console(stderr=True)
out_console = make_console()


class Accel(enum.StrEnum):
    """``--accel``: ``auto`` takes KVM when it works."""

    auto = "auto"
    kvm = "kvm"
    tcg = "tcg"


class Network(enum.StrEnum):
    """``--network``: ``none``, or ``user`` (NAT, the host's loopback unreachable)."""

    none = "none"
    user = "user"


class Boot(enum.StrEnum):
    """``--boot``: ``fast`` (no systemd) or ``systemd``."""

    fast = "fast"
    systemd = "systemd"


class Flavor(enum.StrEnum):
    """``systest --flavor``."""

    debian = "debian"
    nixos = "nixos"


def _settings() -> Settings:
    try:
        return load_settings()
    except VmrunnerError as exc:
        raise _fail(exc) from exc


def _services(*, reap_vms: bool = True) -> Services:
    """The service layer for a command that runs or reads runs: first reaps what a
    killed vmrunner left behind (VMs, temp dirs) and marks its runs interrupted."""
    from vmrunner.services.core import Services
    from vmrunner.services.machines import gc

    settings = _settings()
    try:
        if reap_vms:
            gc(settings)
        services = Services(settings)
        services.reap_interrupted()
        return services
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    except OSError as exc:  # e.g. an unwritable state directory
        err_console.print(f"vmrunner: error: cannot use the state directory: {exc}", markup=False)
        raise typer.Exit(HARNESS_EXIT) from exc


def _fail(exc: VmrunnerError) -> typer.Exit:
    err_console.print("vmrunner: error: ", style="bold red", end="")
    err_console.print(str(exc), markup=False, soft_wrap=True)
    return typer.Exit(HARNESS_EXIT)


def _progress(msg: str) -> None:
    err_console.print(f"vmrunner: {msg}", style="dim", markup=False, soft_wrap=True)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; SIGTERM and SIGHUP cancel it like Ctrl-C, so cleanup always runs."""
    import asyncio
    import signal

    async def main() -> T:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, task.cancel)
        return await coro

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        raise typer.Exit(130) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def learning_hint(learning: dict[str, Any] | None) -> str:
    """The most useful line of a run's learning hints, for people."""
    steps = (learning or {}).get("failed_steps") or []
    if not steps:
        return ""
    step = steps[0]
    line = f"seen before: '{step.get('template')}' ({step.get('occurrences_before', 0)} earlier occurrences)"
    lesson = step.get("lesson") or {}
    fix = lesson.get("fix")
    if fix:
        line += f"; a candidate fix: {json.dumps(fix)[:200]}"
    if step.get("flaky"):
        line += "; this command looks flaky (passed and failed on the same commit)"
    return line if step.get("occurrences_before") or step.get("flaky") else ""
