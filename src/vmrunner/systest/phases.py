"""Phase bookkeeping and the boot/runtime phases, which both flavours share.

A phase body returns its log tail, or raises ``PhaseFailed`` carrying the
system-under-test errors (a result, not a harness failure). Harness errors
(``VmrunnerError``) propagate to the runner, which records them as ``harness_error``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from vmrunner.errors import ChannelError, VmError
from vmrunner.systest import taxonomy as tx
from vmrunner.systest.recipe import Check
from vmrunner.systest.result import Detail, SystestError, SystestResult
from vmrunner.vm.machine import Machine

QUERY_TIMEOUT_S = 10.0
DIAGNOSTIC_TIMEOUT_S = 25.0
"""For the unit lists read after a boot ran out of time (the three are asked at once)."""
SHOWN_TYPES = (".service", ".target", ".socket", ".mount", ".timer", ".path")


class PhaseFailed(Exception):
    """The system under test failed in this phase."""

    def __init__(
        self, errors: list[SystestError], log_tail: str = "", status: str = "failed"
    ) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors
        self.log_tail = log_tail
        self.status = status


async def run_phase(result: SystestResult, name: str, body: Callable[[], Awaitable[str]]) -> bool:
    """Run ``body`` as phase ``name``; True if it passed. Records times, status and errors.

    Does not catch harness errors or cancellation: the phase is marked failed and
    they propagate.
    """
    ph = result.phase(name)
    ph.started_at = time.time()
    ph.status = "failed"
    if result.on_phase is not None:
        result.on_phase(ph)  # started (finished_at is None)
    try:
        ph.log_tail = await body()
        ph.status = "passed"
        return True
    except PhaseFailed as pf:
        ph.status = pf.status
        ph.log_tail = pf.log_tail
        result.errors.extend(e.at(name) for e in pf.errors)
        return False
    finally:
        ph.finished_at = time.time()
        if result.on_phase is not None:
            result.on_phase(ph)


def read_console(machine: Machine) -> str:
    path = getattr(machine, "console_log", None)
    try:
        return path.read_bytes()[-262144:].decode("utf-8", "replace") if path else ""
    except OSError:
        return ""


async def _query(machine: Machine, script: str) -> str:
    """Best effort (for diagnostics after a failed boot): a broken channel reads as ""."""
    try:
        return await _ask(machine, script, DIAGNOSTIC_TIMEOUT_S)
    except VmError:
        return ""


async def _ask(machine: Machine, script: str, timeout: float = QUERY_TIMEOUT_S) -> str:
    """The output of ``script`` for a runtime check. A broken guest channel is a harness
    failure and propagates (``VmError``): it is never a failed check."""
    try:
        res = await machine.run(script, timeout=timeout)
    except TimeoutError:
        return ""
    return res.stdout.decode("utf-8", "replace")


def _shown(units: list[str]) -> list[str]:
    return sorted({u for u in units if u.endswith(SHOWN_TYPES)})


async def partial_results(machine: Machine, console: str, agent_up: bool) -> dict[str, Detail]:
    """Active, failed and pending units: from the console, and from systemctl when the agent answers."""
    seen = tx.console_units(console)
    active, failed, pending = list(seen.active), list(seen.failed), list(seen.pending)
    if agent_up:  # at once: a guest still booting under TCG on a busy host answers slowly
        jobs, up, down = await asyncio.gather(
            _query(machine, "systemctl list-jobs --no-legend --plain"),
            _query(machine, "systemctl list-units --no-legend --plain --state=active"),
            _query(machine, "systemctl list-units --no-legend --plain --failed"),
        )
        pending += tx.list_jobs_units(jobs)
        active += tx.list_units_names(up)
        failed += tx.list_units_names(down)
    pending = [u for u in pending if u not in set(failed)]
    return {
        "active_units": _shown([u for u in active if u not in set(pending)]),
        "failed_units": _shown(failed),
        "pending_units": _shown(pending),
        "running_jobs": list(seen.running_jobs),
    }


async def wait_for_boot(machine: Machine, deadline: float) -> str:
    """The boot phase after the agent answered: ``systemctl is-system-running --wait``
    until running or degraded, within ``deadline`` (monotonic)."""
    left = deadline - time.monotonic()
    state = ""
    timed_out = left <= 0
    if not timed_out:
        try:
            res = await machine.run("systemctl is-system-running --wait", timeout=left)
        except ChannelError as exc:
            console = read_console(machine)
            lost = tx.classify_console(console) or SystestError(
                "boot_timeout", f"the guest stopped answering during boot: {exc}"
            )
            raise PhaseFailed([lost], tx.tail(tx.strip_ansi(console))) from exc
        state = res.stdout.decode().strip()
        timed_out = res.timed_out
    console = read_console(machine)
    if state in ("running", "degraded"):
        return f"system state: {state}\n" + tx.tail(tx.strip_ansi(console), 20)
    err = tx.classify_console(console)
    if err is None and not timed_out:
        err = SystestError("emergency_mode" if state == "maintenance" else "boot_timeout",
                           f"boot ended in state {state!r}")  # fmt: skip
    if err is None:
        details = await partial_results(machine, console, agent_up=True)
        pending = details["pending_units"]
        shown = ", ".join(pending) if isinstance(pending, list) else ""
        err = SystestError(
            "boot_timeout",
            f"the system did not finish booting within the boot deadline (state {state or 'starting'}); "
            f"pending: {shown or 'unknown'}",
            details={**details, "console_tail": tx.tail(tx.strip_ansi(console))},
        )
    raise PhaseFailed(
        [err],
        tx.tail(tx.strip_ansi(console)),
        "timeout" if err.kind == "boot_timeout" else "failed",
    )


@dataclass(frozen=True)
class Outcome:
    ok: bool
    actual: str


async def _check(machine: Machine, check: Check) -> tuple[str, Outcome]:
    """(expected, outcome) for one check."""
    if check.kind == "unit_active":
        out = (await _ask(machine, f"systemctl is-active {check.arg!r}")).strip()
        return "active", Outcome(out == "active", out or "unknown")
    if check.kind == "port_open":
        script = (
            "python3 -c 'import socket,sys\n"
            f'try: socket.create_connection(("127.0.0.1", {int(check.arg)}), 3); print("open")\n'
            'except OSError as e: print("closed: %s" % e)\''
        )
        out = (await _ask(machine, script)).strip()
        return "open", Outcome(out == "open", out)
    if check.kind == "command":
        res = await machine.run(check.arg, timeout=60.0)
        text = (res.stdout + res.stderr).decode("utf-8", "replace")
        return "exit status 0", Outcome(
            res.ok, f"exit status {res.status}: {tx.tail(text, 10)}".rstrip(": ")
        )
    if check.kind == "file_contains":
        res = await machine.execute(["cat", check.arg])
        content = res.stdout.decode("utf-8", "replace")
        actual = tx.tail(content, 10) if res.ok else res.stderr.decode("utf-8", "replace").strip()
        return f"contains {check.text!r}", Outcome(res.ok and check.text in content, actual)
    journal = await _ask(machine, "journalctl -b --no-pager -o short-monotonic")
    hits = tx.journal_matches(journal, check.arg)
    return f"no journal line matches /{check.arg}/", Outcome(
        not hits, "\n".join(hits[:10]) or "no match"
    )


async def runtime(machine: Machine, checks: tuple[Check, ...]) -> str:
    """Failed units (each a ``service_failed``), then every check (each failure a ``check_failed``)."""
    errors: list[SystestError] = []
    failed = tx.list_units_names(
        await _ask(machine, "systemctl list-units --no-legend --plain --failed")
    )
    for unit in failed:
        show = tx.parse_show(
            await _ask(machine, f"systemctl show -p Result,ExecMainStatus,ExecMainCode {unit!r}")
        )
        journal = await _ask(
            machine, f"journalctl -b -u {unit!r} --no-pager -n 30 -o short-monotonic"
        )
        errors.append(tx.service_failed(unit, show, journal))
    lines = [f"failed units: {', '.join(failed) or 'none'}"]
    for check in checks:
        expected, outcome = await _check(machine, check)
        lines.append(f"{'ok  ' if outcome.ok else 'FAIL'} {check.describe()}")
        if not outcome.ok:
            errors.append(SystestError("check_failed", f"check failed: {check.describe()}",
                                       details={"check": check.describe(), "check_kind": check.kind,
                                                "file": check.file or None, "line": check.line or None,
                                                "expected": expected,
                                                "actual": outcome.actual}))  # fmt: skip
    if errors:
        raise PhaseFailed(errors, "\n".join(lines))
    return "\n".join(lines)
