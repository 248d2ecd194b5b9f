"""Requests are validated once, in the service layer: settings fill what the flags left
unset, bad choices are bad input naming the flag, and a broken guest channel during a
runtime check is a harness failure, never a failed check."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import vmrunner
from vmrunner.config import Settings, load_settings
from vmrunner.errors import ChannelError, ConfigError
from vmrunner.services.exec import ExecRequest, resolve
from vmrunner.services.requests import run_filter
from vmrunner.services.systests import validate
from vmrunner.systest import phases
from vmrunner.systest.recipe import Check
from vmrunner.systest.runner import SystestRequest
from vmrunner.vm.machine import CommandResult


def _settings(tmp_path: Path, **file: object) -> Settings:
    cfg = tmp_path / "config.toml"
    cfg.write_text("".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in file.items()))
    return load_settings(
        env={**os.environ, "VMRUNNER_HOME": str(tmp_path), "VMRUNNER_CONFIG": str(cfg)}
    )


def test_exec_takes_unset_flags_from_the_config_file(tmp_path: Path) -> None:
    s = _settings(tmp_path, cpus=1, memory_mib=600, accel="tcg", default_image="mine")
    plan = resolve(s, ExecRequest(argv=("true",)))
    assert (plan.cpus, plan.memory_mib, plan.accel, plan.image) == (1, 600, "tcg", "mine")
    plan = resolve(s, ExecRequest(argv=("true",), cpus=2, memory_mib=1024, accel="auto", image="x"))
    assert (plan.cpus, plan.memory_mib, plan.accel, plan.image) == (2, 1024, "auto", "x")


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (ExecRequest(argv=()), "exec needs a command"),
        (ExecRequest(argv=("x",), accel="fast"), "--accel must be auto, kvm or tcg, got 'fast'"),
        (ExecRequest(argv=("x",), network="bridge"), "--network none|user"),
        (ExecRequest(argv=("x",), boot_mode="uefi"), "--boot fast|systemd"),
        (ExecRequest(argv=("x",), cpus=0), "--cpus must be at least 1"),
        (ExecRequest(argv=("x",), memory_mib=64), "at least 128 MiB"),
        (ExecRequest(argv=("x",), timeout=0), "--timeout must be more than 0"),
    ],
)
def test_bad_exec_requests_name_the_flag(tmp_path: Path, req: ExecRequest, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("|", r"\|")):
        resolve(_settings(tmp_path), req)


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (SystestRequest("r.yml", flavor="arch"), "--flavor must be debian or nixos"),
        (SystestRequest("r.yml", accel="hvf"), "--accel must be auto, kvm or tcg"),
        (SystestRequest(".#x", flavor="nixos"), "--flavor nixos needs --host"),
        (SystestRequest("r.yml", boot_timeout=0), "--boot-timeout must be more than 0"),
        (SystestRequest("r.yml", checks=Path("/nonexistent/checks.yml")), "--checks"),
        (
            SystestRequest("r.yml", cancel_in_progress=True),
            "--cancel-in-progress needs --concurrency",
        ),
    ],
)
def test_bad_systest_requests_are_bad_input(req: SystestRequest, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate(req)


def test_systest_takes_the_accel_setting() -> None:
    assert validate(SystestRequest("r.yml"), "tcg").accel == "tcg"
    assert validate(SystestRequest("r.yml", accel="kvm"), "tcg").accel == "kvm"


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"kind": "build"}, "--kind must be one of"), ({"status": "done"}, "--status must be one of"),
     ({"limit": 0}, "--limit must be between")],
)  # fmt: skip
def test_bad_run_filters_name_the_flag(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_filter(**kw)


def test_a_nixos_systest_without_host_is_bad_input_and_keeps_no_run(vm_env: dict[str, str]) -> None:
    proc = vmrunner(["systest", ".#x", "--flavor", "nixos"], vm_env)
    assert proc.returncode == 125
    assert b"--flavor nixos needs --host" in proc.stderr and b"Traceback" not in proc.stderr
    assert vmrunner(["runs", "list", "--json"], vm_env).stdout.strip() == b"[]"


class BrokenChannel:
    """A machine whose guest channel breaks on the first command."""

    async def run(self, script: str, timeout: float | None = None) -> CommandResult:
        raise ChannelError("the guest channel closed")

    async def execute(self, argv: Any, options: Any = None) -> CommandResult:
        raise ChannelError("the guest channel closed")


@pytest.mark.parametrize(
    "kind", ["unit_active", "port_open", "command", "file_contains", "journal_lacks"]
)
def test_a_broken_channel_in_a_check_is_a_harness_error_not_a_failed_check(kind: str) -> None:
    check = Check(kind, "x" if kind != "port_open" else "22")
    with pytest.raises(ChannelError):
        asyncio.run(phases._check(BrokenChannel(), check))  # type: ignore[arg-type]
    with pytest.raises(ChannelError):
        asyncio.run(phases.runtime(BrokenChannel(), (check,)))  # type: ignore[arg-type]


def test_verbose_logs_are_structured_and_quiet_by_default(vm_env: dict[str, str]) -> None:
    quiet = vmrunner(["runs", "list"], vm_env)
    assert quiet.returncode == 0 and b"migrating" not in quiet.stderr
    loud = vmrunner(
        ["-v", "runs", "list"], {**vm_env, "VMRUNNER_HOME": vm_env["VMRUNNER_HOME"] + "2"}
    )
    assert loud.returncode == 0, loud.stderr
    assert b"level='info'" in loud.stderr and b"event='migrating the store schema'" in loud.stderr
