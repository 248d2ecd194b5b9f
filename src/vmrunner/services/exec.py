"""``exec``: one command in a fresh, throwaway VM, kept as a run of kind ``exec``.

The request is validated here, once. Flags left unset take the settings' values
(``default_image``, ``accel``, ``cpus``, ``memory_mib``), so a config file is never
overridden by a default the user did not type.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from vmrunner.config import Settings
from vmrunner.errors import ConfigError
from vmrunner.results import ExecDocument, exec_status
from vmrunner.services import learning as learn_service
from vmrunner.services import machines
from vmrunner.services.core import RunHandle, Services
from vmrunner.vm.machine import BootMode, ExecOptions, MachineSpec, Network, OutputCallback

Progress = Callable[[str], None]
TAIL_BYTES = 16384
ACCELS = ("auto", "kvm", "tcg")


@dataclass(frozen=True)
class CopySpec:
    src: str
    dst: str

    @classmethod
    def parse(cls, text: str, flag: str) -> CopySpec:
        src, sep, dst = text.partition(":")
        if not sep or not src or not dst:
            raise ConfigError(f"{flag} expects SRC:DST, got {text!r}")
        return cls(src, dst)


@dataclass(frozen=True)
class ExecRequest:
    """One ``vmrunner exec``. ``None`` means "the settings' value"."""

    argv: tuple[str, ...]
    image: str | None = None
    accel: str | None = None
    cpus: int | None = None
    memory_mib: int | None = None
    timeout: float | None = None
    network: str = "none"
    env: tuple[tuple[str, str], ...] = ()
    workdir: str = "/root"
    copy_in: tuple[CopySpec, ...] = ()
    copy_out: tuple[CopySpec, ...] = ()
    boot_mode: str = "fast"
    snapshot: bool = True


@dataclass(frozen=True)
class ResolvedExec:
    """An ``ExecRequest`` with the settings filled in and every choice checked."""

    req: ExecRequest
    image: str
    accel: str
    cpus: int
    memory_mib: int
    network: Network
    boot: BootMode


def resolve(settings: Settings, req: ExecRequest) -> ResolvedExec:
    """Fill in the settings and check every field; raises ``ConfigError`` naming the flag."""
    if not req.argv:
        raise ConfigError("exec needs a command: vmrunner exec [OPTIONS] -- CMD [ARGS...]")
    accel = req.accel or settings.accel
    if accel not in ACCELS:
        raise ConfigError(f"--accel must be auto, kvm or tcg, got {accel!r}")
    try:
        network, boot = Network(req.network), BootMode(req.boot_mode)
    except ValueError as exc:
        raise ConfigError(f"{exc} (--network none|user, --boot fast|systemd)") from exc
    cpus = settings.cpus if req.cpus is None else req.cpus
    memory = settings.memory_mib if req.memory_mib is None else req.memory_mib
    if cpus < 1 or memory < 128:
        raise ConfigError("--cpus must be at least 1 and --memory at least 128 MiB")
    if req.timeout is not None and req.timeout <= 0:
        raise ConfigError(f"--timeout must be more than 0 seconds, got {req.timeout}")
    for c in req.copy_in:
        if not Path(c.src).exists():
            raise ConfigError(f"--copy-in: {c.src} does not exist on the host")
    image = req.image or settings.default_image
    return ResolvedExec(req, image, accel, cpus, memory, network, boot)


class _Tail:
    """The last ``limit`` bytes written to it (for failure signatures)."""

    def __init__(self, limit: int = TAIL_BYTES) -> None:
        self.limit = limit
        self.data = b""

    def __call__(self, chunk: bytes) -> None:
        self.data = (self.data + chunk)[-self.limit :]


def _tee(*targets: OutputCallback) -> OutputCallback:
    def all_of(chunk: bytes) -> None:
        for target in targets:
            target(chunk)

    return all_of


@dataclass
class _Progress:
    started: float
    accel: str | None = None
    timings: dict[str, float] | None = None


async def run_exec(
    services: Services, req: ExecRequest, *, on_stdout: OutputCallback,
    on_stderr: OutputCallback, progress: Progress = lambda _m: None,
) -> dict[str, Any]:  # fmt: skip
    """Boot a fresh VM, run ``req.argv`` in it streaming its output, tear it all down,
    and return the kept result document (kind ``exec``). A command that fails is a
    result; raises a ``VmrunnerError`` only for bad input (before the run is kept) and
    harness failures (after the run is kept as ``error``)."""
    plan = resolve(services.settings, req)
    request = {k: v for k, v in asdict(req).items() if k != "env"}
    request["env_keys"] = [k for k, _ in req.env]  # values may be secret: never kept
    handle = services.accept("exec", request, title=shlex.join(req.argv))
    state = _Progress(time.time())

    def fallback(status: str, message: str) -> dict[str, Any]:
        kind = "cancelled" if status == "cancelled" else "harness"
        return ExecDocument(
            handle.id, status, state.started, time.time(), req.argv, plan.image, accel=state.accel,
            exit_status=130 if status == "cancelled" else 125, timings=state.timings or {},
            errors=[{"kind": kind, "message": message}],
        ).to_dict()  # fmt: skip

    async def body(h: RunHandle) -> dict[str, Any]:
        return await _exec_body(services.settings, plan, h, state, (on_stdout, on_stderr), progress)

    return await services.execute(handle, body, fallback)


async def _exec_body(
    settings: Settings, plan: ResolvedExec, handle: RunHandle, state: _Progress,
    outputs: tuple[OutputCallback, OutputCallback], progress: Progress,
) -> dict[str, Any]:  # fmt: skip
    t0 = time.monotonic()
    image, accel, _kvm = await machines._prepare(settings, plan.image, plan.accel, progress)
    state.accel = accel.value
    spec = MachineSpec(
        image=image, accel=accel, cpus=plan.cpus, memory_mib=plan.memory_mib,
        network=plan.network, boot_mode=plan.boot, name=f"exec-{image.name}",
    )  # fmt: skip
    timings: dict[str, float] = {"prepare_s": time.monotonic() - t0}
    state.timings = timings
    progress(f"run {handle.id}: booting a {image.name} VM ({accel.value})")
    tail = _Tail()
    with handle.output_log.open("ab", buffering=0) as log:  # unbuffered: followed live
        keep = _tee(log.write, tail)
        on_out, on_err = _tee(outputs[0], keep), _tee(outputs[1], keep)
        machine = await machines._launch(spec, settings, use_snapshot=plan.req.snapshot)
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(machine.shutdown, graceful=False)
            timings.update(machine.timings)
            result = await _run_in(machine, plan.req, on_out, on_err, timings)
    timings["total_s"] = time.monotonic() - t0
    learning = await _learn(settings, plan, handle.id, result, tail.data)
    errors = [{"kind": "harness", "message": result.error}] if result.error else []
    return ExecDocument(
        handle.id, exec_status(result.exit_code, result.timed_out, result.error),
        state.started, time.time(), plan.req.argv, image.name, accel=accel.value,
        cpus=plan.cpus, memory_mib=plan.memory_mib,
        exit_code=result.exit_code, signal=result.signal, timed_out=result.timed_out,
        exit_status=result.status, command_duration_s=result.duration_s, timings=timings,
        restored_from_snapshot=machine.restored, output_tail=tail.data.decode("utf-8", "replace"),
        errors=errors, learning=learning,
    ).to_dict()  # fmt: skip


async def _run_in(
    machine: Any, req: ExecRequest, on_out: OutputCallback, on_err: OutputCallback,
    timings: dict[str, float],
) -> Any:  # fmt: skip
    for c in req.copy_in:
        await machine.copy_in(Path(c.src), c.dst)
    await machine.execute(["mkdir", "-p", req.workdir])
    t_cmd = time.monotonic()
    options = ExecOptions(env=dict(req.env), cwd=req.workdir, timeout=req.timeout,
                          on_stdout=on_out, on_stderr=on_err)  # fmt: skip
    result = await machine.execute(req.argv, options)
    timings["command_s"] = time.monotonic() - t_cmd
    for c in req.copy_out:
        await machine.copy_out(c.src, Path(c.dst))
    return result


async def _learn(
    settings: Settings, plan: ResolvedExec, run_id: str, result: Any, output: bytes
) -> dict[str, object] | None:
    """Record the command in the learning store. ``--env`` values may be secrets: the
    store gets them as ``***``, and masked wherever they appear in the command or output."""
    from vmrunner.learning.results import Observation
    from vmrunner.workflow.masking import Masker

    masker = Masker(v for _, v in plan.req.env)
    obs = Observation(
        command=masker.mask_text(shlex.join(plan.req.argv)), exit_code=result.status,
        duration_s=result.duration_s, finished_at=datetime.now(UTC), run_id=run_id, job="exec",
        step=1, step_name="exec", image=plan.image, kind="exec", output=masker.mask(output),
        env={k: "***" for k, _ in plan.req.env},
    )  # fmt: skip
    return await asyncio.to_thread(
        functools.partial(learn_service.record, settings, [obs],
                          hints_for=None if result.ok else run_id)
    )  # fmt: skip
