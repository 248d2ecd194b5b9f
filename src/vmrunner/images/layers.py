"""Apply a recipe's layers (users, files, units, run commands) to an unpacked root.

Runs after ``install_guest_files``, in this order: users (so that files can be
owned by them), files, units, then the run commands. Commands run with
``chroot`` (no /proc or /dev mounted, no network set up); each has a timeout, and
a failure raises ``ImageBuildError`` naming the layer item, with its output tail.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from vmrunner.errors import ImageBuildError
from vmrunner.images.recipe import FileSpec, Recipe, UnitSpec, UserSpec
from vmrunner.procs import run_tool

RUN_TIMEOUT_S = 600.0


def _inside(rootfs: Path, guest_path: str) -> Path:
    """``guest_path`` (absolute, normalised) under ``rootfs``; refuses to escape it."""
    norm = posixpath.normpath("/" + guest_path.lstrip("/"))
    if norm == "/" or ".." in norm.split("/"):
        raise ImageBuildError(f"recipe path {guest_path!r} is not a file path inside the image")
    return rootfs / norm.lstrip("/")


def _chroot(rootfs: Path, argv: list[str], what: str, log: Path) -> str:
    return run_tool(["chroot", str(rootfs), *argv], timeout=RUN_TIMEOUT_S, what=what, log=log)


def add_user(rootfs: Path, user: UserSpec, log: Path) -> None:
    argv = ["useradd", "-m", "-s", user.shell]
    if user.groups:
        argv += ["-G", ",".join(user.groups)]
    _chroot(rootfs, [*argv, user.name], f"recipe user {user.name}", log)


def write_file(rootfs: Path, spec: FileSpec, log: Path) -> None:
    path = _inside(rootfs, spec.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        path.unlink()
    path.write_text(spec.content)
    path.chmod(spec.mode)
    if spec.owner not in ("root", "root:root", "0:0"):
        guest = "/" + path.relative_to(rootfs).as_posix()
        _chroot(rootfs, ["chown", spec.owner, guest], f"recipe file {spec.path} (chown)", log)


def install_unit(rootfs: Path, unit: UnitSpec, log: Path) -> None:
    etc = rootfs / "etc/systemd/system"
    target = _inside(rootfs, f"/etc/systemd/system/{unit.name}")
    if unit.content:
        etc.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        target.write_text(unit.content)
        target.chmod(0o644)
    if unit.mask:
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to("/dev/null")
    elif unit.enable:
        _chroot(
            rootfs, ["systemctl", "enable", unit.name], f"recipe unit {unit.name} (enable)", log
        )


def run_command(rootfs: Path, command: str, log: Path) -> None:
    _chroot(rootfs, ["/bin/sh", "-ec", command], f"recipe run command {command!r}", log)


def apply_layers(rootfs: Path, recipe: Recipe, log: Path) -> None:
    """Apply ``recipe``'s users, files, units and run commands to ``rootfs``, in that order."""
    for user in recipe.users:
        add_user(rootfs, user, log)
    for spec in recipe.files:
        write_file(rootfs, spec, log)
    for unit in recipe.units:
        install_unit(rootfs, unit, log)
    for command in recipe.run:
        run_command(rootfs, command, log)
