"""``systest``: a system configuration built, installed, booted and checked in a VM, kept
as a run of kind ``systest``. The request is validated here, once: an unknown flavour,
accelerator or a NixOS test without ``host`` is bad input, never a harness error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from vmrunner.errors import ConfigError
from vmrunner.results.systest import Phase
from vmrunner.services.core import RunHandle, Services
from vmrunner.store.owner import this_host
from vmrunner.systest.artifacts import write_reports
from vmrunner.systest.recipe import recipe_schema
from vmrunner.systest.runner import Systest, SystestRequest

__all__ = [
    "Phase",
    "SystestRequest",
    "phase_message",
    "recipe_schema",
    "run_systest",
    "validate",
    "write_reports",
]

FLAVORS = ("debian", "nixos")
ACCELS = ("auto", "kvm", "tcg")


def validate(req: SystestRequest, default_accel: str = "auto") -> SystestRequest:
    """``req`` checked (raises ``ConfigError`` naming the flag), with the settings' accel
    when none was given."""
    if req.flavor not in FLAVORS:
        raise ConfigError(f"--flavor must be debian or nixos, got {req.flavor!r}")
    accel = req.accel or default_accel or "auto"
    if accel not in ACCELS:
        raise ConfigError(f"--accel must be auto, kvm or tcg, got {accel!r}")
    if req.flavor == "nixos" and not req.host:
        raise ConfigError("--flavor nixos needs --host NAME (the nixosConfigurations attribute)")
    if req.boot_timeout <= 0:
        raise ConfigError(f"--boot-timeout must be more than 0 seconds, got {req.boot_timeout}")
    if req.checks is not None and not req.checks.is_file():
        raise ConfigError(f"--checks {req.checks}: no such file")
    if req.cancel_in_progress and req.concurrency is None:
        raise ConfigError("--cancel-in-progress needs --concurrency GROUP")
    return replace(req, accel=accel)


def phase_message(phase: Phase) -> str:
    """A phase starting (``phase build: started``) or ending (``phase build: passed in 1.2 s``)."""
    if phase.finished_at is None:
        return f"phase {phase.name}: started"
    return f"phase {phase.name}: {phase.status} in {phase.duration_s:.1f} s"


async def run_systest(
    services: Services, req: SystestRequest, progress: Callable[[str], None] = lambda _m: None,
    on_phase: Callable[[Phase], None] = lambda _p: None,
) -> dict[str, Any]:  # fmt: skip
    """Run one system test and return its kept result document. The system under test
    failing is a result; harness failures are a ``harness_error`` in it (status error).
    Each phase is reported to ``on_phase`` (and as a ``progress`` message) when it starts
    and when it ends. Raises ``CancelledError`` only for Ctrl-C/SIGTERM (after keeping
    the run)."""
    req = validate(req, services.settings.accel)
    request = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(req).items()}
    handle = services.accept("systest", request, title=f"{req.flavor} {req.config}")

    def both(msg: str) -> None:
        progress(msg)
        with handle.output_log.open("a", encoding="utf-8") as log:
            log.write(f"vmrunner: {msg}\n")

    run = Systest(services.settings, req, both, run_id=handle.id, groups=services.concurrency)
    run.result.host = this_host()  # the kept artifacts' result.json is the final document

    def phase_seen(phase: Phase) -> None:
        both(phase_message(phase))
        on_phase(phase)

    run.result.on_phase = phase_seen

    def fallback(status: str, message: str) -> dict[str, Any]:
        result = run.result
        result.status = status
        if status == "cancelled" and "on request" in message:  # say who cancelled it
            result.errors = [replace(e, message=message) if e.kind == "cancelled" else e
                             for e in result.errors]  # fmt: skip
        return result.to_dict()

    async def body(h: RunHandle) -> dict[str, Any]:
        result = await run.run()
        with h.output_log.open("a", encoding="utf-8") as log:
            for phase in result.phases:
                log.write(f"== phase {phase.name}: {phase.status}\n{phase.log_tail}\n")
        return result.to_dict()

    return await services.execute(handle, body, fallback)
