"""The NixOS flavour: ``nix build`` of a flake's VM with the agent module, read as it streams.

* ``build_argv`` (pure): the ``nix build`` command with fail-fast settings (one
  download attempt, short connect and stall timeouts) and
  ``--log-format internal-json``. The VM is
  ``CONFIG#nixosConfigurations.HOST.config.system.build.vm`` extended (with
  ``extendModules``) by ``AGENT_MODULE``, which runs the vmrunner guest agent as an
  early systemd unit on a virtio-serial port and makes the VM headless.
* ``NixLogReader`` (pure): parses internal-json lines into typed events, remembers
  build logs per derivation, and says "stop now" at the first network error
  (FR-003a: no retries, the build ends at once).
* ``nix_build`` runs it through ``procs.stream_tool``.
* ``nixos_build_and_install``: the build and install phases. The boot phase then
  starts the output's ``bin/run-HOST-vm`` as a ``vm.nixos.NixosVmMachine`` and the
  boot and runtime phases are the same as for Debian. They work on any
  :class:`NixosRun` (``systest.runner.Systest`` is one, and imports this module).
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import re
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vmrunner.config import Settings
from vmrunner.errors import VmStartError
from vmrunner.images.manifest import Image
from vmrunner.procs import stream_tool
from vmrunner.systest import taxonomy as tx
from vmrunner.systest.artifacts import BUILD_LOG
from vmrunner.systest.phases import PhaseFailed, run_phase
from vmrunner.systest.result import SystestError, SystestResult
from vmrunner.vm.machine import MachineSpec
from vmrunner.vm.nixos import NixosVmMachine, find_run_script
from vmrunner.vm.qemu import QemuMachine

FAIL_FAST_OPTIONS = (
    ("download-attempts", "1"),
    ("connect-timeout", "5"),
    ("stalled-download-timeout", "10"),
    ("fallback", "false"),
)
ACT_BUILD = 105
ACT_FILE_TRANSFER = 101
RES_BUILD_LOG_LINE = 101
CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f]")

AGENT_MODULE = """\
# Added by vmrunner: the guest agent as an early unit on its virtio-serial port, and a
# headless VM. The console, QMP and the port itself are added at run time (QEMU_OPTS).
{ pkgs, ... }: {
  systemd.services.vmrunner-agent = {
    description = "vmrunner guest agent";
    wantedBy = [ "sysinit.target" ];
    before = [ "sysinit.target" ];
    unitConfig.DefaultDependencies = false;
    serviceConfig = {
      ExecStart = "${pkgs.python3}/bin/python3 -u ${./agent.py}";
      Restart = "always";
      RestartSec = "0.2";
    };
  };
  boot.kernelModules = [ "virtio_console" ];
  virtualisation.graphics = false;
}
"""


def flake_ref(config: str) -> str:
    """``config`` as a flake reference ``builtins.getFlake`` accepts (local paths made absolute)."""
    if ":" in config.split("#")[0] or config.startswith(("github", "git+", "path:")):
        return config
    return "path:" + str(Path(config).resolve())


def vm_expr(config: str, host: str, module: Path) -> str:
    """The Nix expression for HOST's VM extended with the agent module (needs --impure)."""
    return (
        f"(((builtins.getFlake {json.dumps(flake_ref(config))}).nixosConfigurations.{json.dumps(host)})"
        f".extendModules {{ modules = [ (import {module}) ]; }}).config.system.build.vm"
    )


def build_argv(
    nix: str,
    expr: str,
    *,
    substituters: str | None = None,
    single_user: bool = False,
    options: tuple[tuple[str, str], ...] = (),
) -> list[str]:
    """The ``nix build`` argv (pure); ``options`` are extra ``--option KEY VALUE`` pairs."""
    argv = [nix, "--extra-experimental-features", "nix-command flakes", "build", "--no-link", "--json",
            "--impure", "--log-format", "internal-json"]  # fmt: skip
    for key, value in FAIL_FAST_OPTIONS:
        argv += ["--option", key, value]
    if substituters is not None:
        argv += ["--option", "substituters", substituters]
    if single_user:
        argv += ["--option", "build-users-group", ""]
    for key, value in options:
        argv += ["--option", key, value]
    return [*argv, "--expr", expr]


@dataclass(frozen=True)
class NixEvent:
    """One internal-json event (only the fields vmrunner uses)."""

    action: str
    id: int = 0
    level: int = 0
    type: int = 0
    text: str = ""
    msg: str = ""
    file: str | None = None
    line: int | None = None
    column: int | None = None
    fields: tuple[Any, ...] = ()

    @classmethod
    def parse(cls, line: str) -> NixEvent | None:
        """Parse an ``@nix {...}`` line; None for anything else or malformed JSON."""
        if not line.startswith("@nix "):
            return None
        try:
            data = json.loads(line[5:])
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("action"), str):
            return None
        raw_line, raw_col = data.get("line"), data.get("column")
        return cls(
            action=data["action"], id=int(data.get("id") or 0), level=int(data.get("level") or 0),
            type=int(data.get("type") or 0), text=str(data.get("text") or ""),
            msg=tx.strip_ansi(str(data.get("msg") or "")),
            file=str(data["file"]) if data.get("file") else None,
            line=raw_line if isinstance(raw_line, int) else None,
            column=raw_col if isinstance(raw_col, int) else None,
            fields=tuple(data.get("fields") or ()),
        )  # fmt: skip


@dataclass
class NixLogReader:
    """Folds internal-json lines into what a classification needs. ``feed`` returns True
    at the first network error (the caller then kills nix)."""

    messages: list[str] = field(default_factory=list)
    plain: list[str] = field(default_factory=list)
    builds: dict[int, str] = field(default_factory=dict)
    build_logs: dict[str, list[str]] = field(default_factory=dict)
    downloads: dict[int, str] = field(default_factory=dict)
    first_error: NixEvent | None = None
    network: tuple[str, str] | None = None

    def feed(self, line: str) -> bool:
        ev = NixEvent.parse(line)
        if ev is None:
            if line.strip():
                self.plain.append(tx.strip_ansi(line))
            return False
        if ev.action == "start" and ev.type == ACT_BUILD and ev.fields:
            self.builds[ev.id] = str(ev.fields[0])
        elif ev.action == "start" and ev.type == ACT_FILE_TRANSFER and ev.fields:
            self.downloads[ev.id] = str(ev.fields[0])
        elif (
            ev.action == "result"
            and ev.type == RES_BUILD_LOG_LINE
            and ev.id in self.builds
            and ev.fields
        ):
            self.build_logs.setdefault(self.builds[ev.id], []).append(
                tx.strip_ansi(str(ev.fields[0]))
            )
        elif ev.action == "msg":
            self.messages.append(ev.msg)
            if ev.level == 0 and self.first_error is None:
                self.first_error = ev
            failure = tx.nix_download_failure(ev.msg)
            if failure is not None and self.network is None:
                self.network = failure
                return True
        return False

    def text(self) -> str:
        return "\n".join(self.messages + self.plain)

    def classify(self) -> SystestError:
        """The error for a failed build: network first, then what Nix said."""
        err = tx.classify_nix(self.text())
        ev = self.first_error
        if err.kind == "eval_error" and ev is not None and ev.file and ev.line is not None:
            details = dict(err.details)
            details.update(file=tx.flake_relative(ev.file), line=ev.line, column=ev.column)
            err = SystestError(err.kind, err.message, err.phase, details)
        drv = err.details.get("derivation")
        if err.kind == "build_error" and isinstance(drv, str) and self.build_logs.get(drv):
            err = SystestError(err.kind, err.message, err.phase,
                               {**err.details, "log_tail": "\n".join(self.build_logs[drv][-30:])})  # fmt: skip
        return err


def _single_user() -> bool:
    try:
        grp.getgrnam("nixbld")
        return False
    except KeyError:
        return True


@dataclass(frozen=True)
class NixBuild:
    out_path: str | None
    error: SystestError | None
    log_tail: str
    log: str = ""  # everything Nix said (messages, then other lines)


def write_module(tmp: Path) -> Path:
    """Write the agent module and the agent next to it in ``tmp``; return the module path."""
    from vmrunner.guest import agent as agent_module

    d = tmp / "nix-agent"
    d.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(agent_module.__file__, d / "agent.py")
    (d / "module.nix").write_text(AGENT_MODULE)
    return d / "module.nix"


async def nix_build(
    argv: list[str], *, timeout: float = 3600.0, env: dict[str, str] | None = None
) -> NixBuild:
    """Run ``nix build`` (``argv`` from ``build_argv``), stopping at the first network error."""
    reader = NixLogReader()
    outcome = await stream_tool(argv, timeout=timeout, on_line=reader.feed, env=env)
    text = reader.text()
    if outcome.status == 0:
        try:
            built = json.loads(outcome.stdout)
            out = str(built[0]["outputs"]["out"])
        except (ValueError, LookupError, TypeError):
            out = None
        return NixBuild(out, None, tx.tail(text), text)
    if outcome.timed_out:
        err = SystestError("build_error", f"nix build did not finish within {timeout:.0f} s",
                           details={"log_tail": tx.tail(text)})  # fmt: skip
        return NixBuild(None, err, tx.tail(text), text)
    return NixBuild(None, reader.classify(), tx.tail(text), text)


class NixosRequest(Protocol):
    """The parts of a systest request the NixOS phases read."""

    @property
    def config(self) -> str: ...  # the flake
    @property
    def host(self) -> str | None: ...  # its ``nixosConfigurations`` entry


class NixosRun(Protocol):
    """What the NixOS build and install phases read and set on a run.

    They read the request, the settings, the run's temporary directory and progress
    callback, fill in ``result``, and set ``image`` and ``make_machine`` for the boot phase.
    """

    image: Image | None
    make_machine: Callable[[MachineSpec], QemuMachine]

    @property
    def req(self) -> NixosRequest: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def tmp(self) -> Path | None: ...
    @property
    def result(self) -> SystestResult: ...
    @property
    def progress(self) -> Callable[[str], None]: ...
    def artifact(self, name: str) -> Path | None: ...


async def nixos_build_and_install(run: NixosRun) -> None:
    """The build phase (``nix build`` of the VM with the agent module) and the install
    phase (the run script checked; its disk goes to the VM's directory when it starts).
    Then the boot phase starts the run script as a ``NixosVmMachine``."""
    assert run.tmp is not None
    if not run.req.host:
        run.result.errors.append(
            SystestError("harness_error", "--flavor nixos needs --host NAME", "build")
        )
        return
    module = write_module(run.tmp)
    nix = shutil.which("nix") or "nix"
    argv = build_argv(
        nix, vm_expr(run.req.config, run.req.host, module), single_user=_single_user()
    )
    env = {**os.environ, "NIX_BUILD_TOP": str(run.tmp)}
    built: list[NixBuild] = []

    async def build() -> str:
        run.progress(f"nix build of {run.req.config}#nixosConfigurations.{run.req.host} (VM)")
        res = await nix_build(argv, env=env)
        build_log = run.artifact(BUILD_LOG)
        if build_log is not None:
            with contextlib.suppress(OSError):
                built_line = f"built {res.out_path}\n" if res.out_path else ""
                build_log.write_text(f"$ {shlex.join(argv)}\n{res.log}\n{built_line}")
                run.result.artifacts["build_log"] = str(build_log)
        if res.error is not None:
            raise PhaseFailed([res.error], res.log_tail)
        built.append(res)
        return f"built {res.out_path}\n{res.log_tail}"

    async def install() -> str:
        out = built[0].out_path
        if out is None:
            raise PhaseFailed(
                [SystestError("install_error", "nix build did not report the VM's output path")]
            )
        try:
            script = find_run_script(Path(out))
        except VmStartError as exc:
            raise PhaseFailed(
                [SystestError("install_error", str(exc), details={"derivation": out})]
            ) from exc
        run.image = Image(name=f"nixos-{run.req.host}", digest=hashlib.sha256(out.encode()).hexdigest(),
                          path=Path(out), kernel_version="", built_at=time.time(),
                          build_seconds=run.result.phase("build").duration_s)  # fmt: skip
        run.make_machine = lambda spec: NixosVmMachine(spec, run.settings.vms_dir, script)
        return f"run script {script}; its disk is created in the VM's directory when it starts"

    if await run_phase(run.result, "build", build):
        await run_phase(run.result, "install", install)
