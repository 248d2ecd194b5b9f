"""``vmrunner systest``: preflight, build, install, boot and runtime, in order.

Every resource (temporary directory, VM) is a context entered on one
``AsyncExitStack``, so it is released after success, failure, boot timeout and
cancellation (Ctrl-C, SIGTERM). After ``kill -9``, QEMU dies with its parent
(parent-death signal) and the recorded directories are reaped by the ``gc`` that
every systest runs first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vmrunner.cancel import CancelToken
from vmrunner.config import Settings
from vmrunner.errors import (
    ImageBuildError,
    KvmUnavailableError,
    ToolMissingError,
    VmrunnerError,
    VmStartError,
)
from vmrunner.images.cache import Image, ImageCache
from vmrunner.images.recipe import mirrors_from
from vmrunner.procs import require_tool
from vmrunner.store.concurrency import ConcurrencyStore, run_in_group
from vmrunner.systest import taxonomy as tx
from vmrunner.systest.artifacts import BUILD_LOG, CONSOLE, keep_final
from vmrunner.systest.nix import nixos_build_and_install
from vmrunner.systest.phases import PhaseFailed, read_console, run_phase, runtime, wait_for_boot
from vmrunner.systest.recipe import (
    Check,
    RecipeInvalidError,
    SystestRecipe,
    load_checks_file,
    load_file,
)
from vmrunner.systest.result import SystestError, SystestResult
from vmrunner.vm.kvm import choose_accel
from vmrunner.vm.machine import Accel, BootMode, MachineSpec
from vmrunner.vm.qemu import QemuMachine
from vmrunner.vm.records import record_dir

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
MIN_FREE_BYTES = 3 << 30
# How long a cancelled build may take to kill its tool and remove its directory.
BUILD_STOP_TIMEOUT_S = 60.0
# nsenter and ip: a NixOS VM always has a user-mode network, run in its own namespace
NIXOS_TOOLS = ("nix", "qemu-system-x86_64", "nsenter", "ip")
DEBIAN_TOOLS = ("qemu-system-x86_64", "qemu-img", "mmdebstrap", "mkfs.ext4", "busybox", "chroot",
                "unshare", "newuidmap", "newgidmap")  # fmt: skip


@dataclass(frozen=True)
class SystestRequest:
    """One ``vmrunner systest``."""

    config: str
    flavor: str = "debian"
    host: str | None = None
    boot_timeout: float = 300.0
    accel: str = ""  # "" means the settings' accel (the service layer fills it in)
    keep_artifacts: Path | None = None
    cpus: int = 2
    memory_mib: int = 1024
    checks: Path | None = None  # a checks file (``checks:`` as in a recipe), either flavour
    concurrency: str | None = None  # one active run per group; a newer one replaces a waiting one
    cancel_in_progress: bool = False  # ... and cancels the active one


def _noop(_msg: str) -> None:
    return None


class Systest:
    """One run: holds the request, the result being filled in, and what phases hand on."""

    def __init__(
        self, settings: Settings, req: SystestRequest, progress: Progress, *,
        run_id: str | None = None, groups: ConcurrencyStore | None = None,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.req = req
        self.progress = progress
        self.groups = groups
        self.result = SystestResult(id=run_id or uuid.uuid4().hex[:12], config=req.config,
                                    flavor=req.flavor, started_at=time.time())  # fmt: skip
        self.accel = Accel.TCG
        self.recipe: SystestRecipe | None = None
        self.checks: tuple[Check, ...] = ()
        self.image: Image | None = None
        self.tmp: Path | None = None
        self.machine: QemuMachine | None = None
        # How the boot phase makes its VM; the NixOS flavour sets a factory that starts
        # the configuration's own run script instead of booting ``self.image`` directly.
        self.make_machine: Callable[[MachineSpec], QemuMachine] = lambda spec: QemuMachine(
            spec, self.settings.vms_dir
        )

    # -- preflight ------------------------------------------------------------------------
    async def preflight(self) -> str:
        errors: list[SystestError] = []
        lines = []
        try:
            self.accel, _ = await asyncio.to_thread(
                choose_accel, self.req.accel, self.settings.state_dir / "kvm-check.json"
            )
            self.result.accel = self.accel.value
            lines.append(f"accel: {self.accel.value} (asked for {self.req.accel})")
        except KvmUnavailableError as exc:
            raise PhaseFailed(
                [SystestError("kvm_unavailable", str(exc), details={"requested": self.req.accel})]
            ) from exc
        tools = DEBIAN_TOOLS if self.req.flavor == "debian" else NIXOS_TOOLS
        for tool in tools:
            try:
                lines.append(f"{tool}: {require_tool(tool)}")
            except ToolMissingError as exc:
                errors.append(SystestError("tool_missing", str(exc), details={"tool": tool}))
        free = shutil.disk_usage(self.settings.cache_dir).free
        lines.append(f"free disk: {free >> 20} MiB")
        if free < MIN_FREE_BYTES:
            errors.append(SystestError("harness_error", f"only {free >> 20} MiB free in {self.settings.cache_dir}; "
                                       f"a system test needs {MIN_FREE_BYTES >> 20} MiB"))  # fmt: skip
        try:
            if self.req.flavor == "debian":
                self.recipe = load_file(Path(self.req.config), mirrors_from(self.settings))
                self.checks = self.recipe.checks
                lines.append(f"recipe: {self.recipe.image.name}, {len(self.recipe.checks)} checks")
            if self.req.checks is not None:
                extra = load_checks_file(self.req.checks)
                self.checks += extra
                lines.append(f"checks file {self.req.checks}: {len(extra)} checks")
        except RecipeInvalidError as exc:
            errors += [SystestError("recipe_invalid", p.message, details={"file": exc.filename, "line": p.line,
                                                                          "column": p.col})
                       for p in exc.problems]  # fmt: skip
        if errors:
            raise PhaseFailed(errors, "\n".join(lines))
        return "\n".join(lines)

    # -- Debian: build and install ----------------------------------------------------------
    async def debian_build_and_install(self) -> None:
        """The build phase (root file system, recipe layers) and the install phase (disk image).

        The build runs in a worker thread, which cancelling this task cannot stop: on
        the way out (cancelled: Ctrl-C, SIGTERM) it sets the build's ``CancelToken``,
        which kills the running tool at once, and waits until the thread has removed
        its temporary directory. The build log goes to the artifacts directory, if any.
        """
        assert self.recipe is not None
        recipe = self.recipe.image
        cache = ImageCache(self.settings.images_dir, {recipe.name: recipe})
        try:
            image = await asyncio.to_thread(cache.find, recipe.name)
        except VmrunnerError:
            image = None  # corrupt: rebuilt below
        if image is not None:
            self.image = image
            note = f"cached image {recipe.name} {image.digest[:16]}"
            await run_phase(self.result, "build", _const(note))
            await run_phase(self.result, "install", _const(note))
            return
        installing = asyncio.Event()
        loop = asyncio.get_running_loop()
        cancel = CancelToken()
        build_log = self.artifact(BUILD_LOG)

        def stage(name: str) -> None:
            loop.call_soon_threadsafe(installing.set)

        build_task = asyncio.ensure_future(
            asyncio.to_thread(cache.ensure, recipe.name, self.progress, stage=stage,
                              cancel=cancel, build_log=build_log)
        )  # fmt: skip

        async def build() -> str:
            done = asyncio.ensure_future(installing.wait())
            try:
                await asyncio.wait({build_task, done}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                done.cancel()
            if build_task.done() and build_task.exception() is not None and not installing.is_set():
                exc = build_task.exception()
                if isinstance(exc, ImageBuildError):
                    err = tx.classify_apt(exc.log_tail or str(exc))
                    raise PhaseFailed([err], exc.log_tail) from exc
            return (
                f"root file system for {recipe.name} built ({len(recipe.all_packages())} packages)"
            )

        async def install() -> str:
            try:
                self.image = await asyncio.shield(build_task)  # cancelled by the token below
            except ImageBuildError as exc:
                raise PhaseFailed([SystestError("install_error", str(exc).splitlines()[0],
                                                details={"log_tail": exc.log_tail})], exc.log_tail) from exc  # fmt: skip
            return f"disk image {self.image.rootfs} ({self.image.kernel_version})"

        try:
            if await run_phase(self.result, "build", build):
                await run_phase(self.result, "install", install)
        finally:
            if not build_task.done():
                cancel.cancel()
                await asyncio.wait({build_task}, timeout=BUILD_STOP_TIMEOUT_S)
            if build_task.done() and not build_task.cancelled():
                build_task.exception()  # seen: a cancelled build's error is expected
            if build_log is not None and build_log.is_file():
                self.result.artifacts["build_log"] = str(build_log)

    # -- boot and runtime -------------------------------------------------------------------
    async def boot(self, stack: contextlib.AsyncExitStack) -> str:
        assert self.image is not None
        spec = MachineSpec(image=self.image, accel=self.accel, cpus=self.req.cpus, memory_mib=self.req.memory_mib,
                           boot_mode=BootMode.SYSTEMD, boot_timeout=self.req.boot_timeout,
                           name=f"systest-{self.result.id}")  # fmt: skip
        from vmrunner.services.machines import vm_slots, with_settings

        deadline = time.monotonic() + self.req.boot_timeout
        machine = self.make_machine(with_settings(spec, self.settings))

        machine.slots = vm_slots(self.settings)  # the host's running-VM limit
        self.progress(
            f"booting {self.image.name} with systemd ({self.accel.value}), deadline {self.req.boot_timeout:.0f} s"
        )
        try:
            await machine.launch()
        except VmStartError as exc:
            console = exc.console_tail
            err = tx.classify_console(console)
            if err is None:
                units = tx.console_units(console)
                err = SystestError("boot_timeout", f"the guest agent never answered: {str(exc).splitlines()[0]}",
                                   details={"active_units": list(units.active), "failed_units": list(units.failed),
                                            "pending_units": list(units.pending), "console_tail": console})  # fmt: skip
            raise PhaseFailed(
                [err], console, "timeout" if err.kind == "boot_timeout" else "failed"
            ) from exc
        self.machine = machine
        stack.push_async_callback(self._stop_machine)
        return await wait_for_boot(machine, deadline)

    async def _stop_machine(self) -> None:
        if self.machine is None:
            return
        console = self.artifact(CONSOLE)
        if console is not None:
            with contextlib.suppress(OSError):
                console.write_text(read_console(self.machine))
                self.result.artifacts["console"] = str(console)
        await self.machine.shutdown(graceful=False)

    # -- artifacts (--keep-artifacts DIR) ---------------------------------------------------
    def artifact(self, name: str) -> Path | None:
        """``name`` in the artifacts directory (created), or None without one (or if it
        cannot be created: a warning, not a failure of the run)."""
        dest = self.req.keep_artifacts
        if dest is None:
            return None
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.warning("cannot keep artifacts in %s: %s", dest, exc)
            return None
        return dest / name

    def _keep_final(self) -> None:
        """The recipe, the phase logs, junit.xml and result.json, once the result is final."""
        if self.req.keep_artifacts is None:
            return
        try:
            keep_final(self.result, self.req.keep_artifacts, self.req.config)
        except OSError as exc:
            log.warning("cannot keep artifacts in %s: %s", self.req.keep_artifacts, exc)

    async def runtime(self) -> str:
        assert self.machine is not None
        return await runtime(self.machine, self.checks)

    # -- the whole run ------------------------------------------------------------------------
    async def run(self) -> SystestResult:
        from vmrunner.services.machines import gc

        self.settings.ensure_dirs()
        (self.settings.state_dir / "tmp").mkdir(exist_ok=True)
        await asyncio.to_thread(gc, self.settings)
        try:
            if self.req.concurrency is None or self.groups is None:
                await self._in_stack()
            else:
                await self._in_group(self.req.concurrency)
        except asyncio.CancelledError:
            self._harness("cancelled", "the system test was cancelled (Ctrl-C or SIGTERM)")
            self.result.status = "cancelled"
            self._finish()
            self._keep_final()
            raise
        except VmrunnerError as exc:
            self._harness("harness_error", str(exc))
        self._finish()
        await asyncio.to_thread(self._learn)
        self._keep_final()
        return self.result

    async def _in_stack(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            rec = stack.enter_context(record_dir(self.settings.state_dir / "tmp", "systest"))
            self.tmp = rec.path
            await self._phases(stack)

    async def _in_group(self, group: str) -> None:
        """The run inside concurrency group ``group``, shared by every vmrunner process of
        this state directory (as GitHub's ``concurrency``): one runs, one waits; a newer
        run replaces the waiting one, and with cancel-in-progress cancels the running one."""
        assert self.groups is not None
        outcome = await run_in_group(
            self.groups, f"systest:{group}", self.result.id, self.req.cancel_in_progress, self._in_stack,
            on_pending=lambda: self.progress(f"waiting for the running systest in group {group!r}"),
        )  # fmt: skip
        if outcome.cancelled == "pending":
            self.result.errors.append(SystestError(
                "cancelled", f"a newer systest in concurrency group {group!r} replaced this one "
                "before it started", "preflight", {"concurrency_group": group}))  # fmt: skip
            self.result.status = "cancelled"
        elif outcome.cancelled == "running":
            self._harness("cancelled", f"a newer systest in concurrency group {group!r} "
                          "cancelled this one (cancel-in-progress)")  # fmt: skip
            self.result.status = "cancelled"

    def _learn(self) -> None:
        """Record each phase that ran as an observation; a failed result gets its hints."""
        from datetime import UTC, datetime

        from vmrunner.learning import Observation
        from vmrunner.services import learning as learn_service

        r = self.result
        subject = Path(self.req.config).name
        observations, prev = [], None
        for index, phase in enumerate(r.phases, start=1):
            if phase.started_at is None or phase.status == "skipped":
                continue
            command = f"systest {phase.name} {subject}"
            messages = "\n".join(e.message for e in r.errors if e.phase == phase.name)
            code = {"passed": 0, "timeout": 124}.get(phase.status, 1)
            observations.append(
                Observation(
                    command=command, exit_code=code, duration_s=phase.duration_s,
                    finished_at=datetime.fromtimestamp(phase.finished_at or r.finished_at, UTC),
                    run_id=r.id, job=f"systest-{self.req.flavor}", step=index, step_name=phase.name,
                    repo=str(self.req.config), kind="systest", prev_command=prev,
                    output=f"{phase.log_tail}\n{messages}",
                )
            )  # fmt: skip
            prev = command
        failed = r.status != "success"
        hints = learn_service.record(
            self.settings, observations, hints_for=r.id if failed else None
        )
        if failed:
            r.learning = hints

    async def _phases(self, stack: contextlib.AsyncExitStack) -> None:
        if not await run_phase(self.result, "preflight", self.preflight):
            return
        if self.req.flavor == "debian":
            await self.debian_build_and_install()
        else:
            await nixos_build_and_install(self)
        if self.result.phase("install").status != "passed":
            return
        if not await run_phase(self.result, "boot", lambda: self.boot(stack)):
            return
        await run_phase(self.result, "runtime", self.runtime)

    def _harness(self, kind: str, message: str) -> None:
        running = next(
            (p for p in self.result.phases if p.status == "failed" and p.finished_at is None), None
        )
        current = running or next(
            (p for p in reversed(self.result.phases) if p.started_at is not None), None
        )
        phase = current.name if current else "preflight"
        if current is not None:
            current.status = "failed"
            current.finished_at = current.finished_at or time.time()
        self.result.errors.append(SystestError(kind, message, phase))

    def _finish(self) -> None:
        self.result.finished_at = time.time()
        r = self.result
        if r.status == "cancelled":
            return
        if any(e.kind == "harness_error" for e in r.errors):
            r.status = "error"
        elif any(p.status == "timeout" for p in r.phases):
            r.status = "timeout"
        elif all(p.status == "passed" for p in r.phases):
            r.status = "success"
        else:
            r.status = "failure"


def _const(text: str) -> Callable[[], asyncio.Future[str]]:
    def body() -> asyncio.Future[str]:
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        fut.set_result(text)
        return fut

    return body
