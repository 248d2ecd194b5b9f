"""The ``vmrunner`` command line: parses flags, calls the service layer, prints.

Exit statuses: ``exec`` exits with the command's status (124 when its timeout
killed it); 125 means vmrunner itself failed (harness error, bad flags), as
coreutils ``timeout`` and ``env`` do. Other commands exit 0 on success, 1 on a
failed check, 125 on a harness error.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from vmrunner import service
from vmrunner.config import Settings, load_settings
from vmrunner.errors import VmrunnerError

HARNESS_EXIT = 125
T = TypeVar("T")

app = typer.Typer(
    name="vmrunner",
    help="Run CI work inside throwaway virtual machines, and learn from every command run.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
image_app = typer.Typer(help="Build and list guest images.", no_args_is_help=True)
app.add_typer(image_app, name="image")
err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def _settings() -> Settings:
    return load_settings()


def _fail(exc: VmrunnerError) -> typer.Exit:
    err_console.print(f"[bold red]vmrunner: error:[/] {exc}", markup=True, soft_wrap=True)
    return typer.Exit(HARNESS_EXIT)


def _progress(msg: str) -> None:
    err_console.print(f"[dim]vmrunner:[/] {msg}")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; SIGTERM and SIGHUP cancel it like Ctrl-C, so cleanup always runs."""

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


def _writer(stream: Any) -> Callable[[bytes], None]:
    buf = stream.buffer

    def write(data: bytes) -> None:
        buf.write(data)
        buf.flush()

    return write


@app.command("exec", context_settings={"allow_interspersed_args": False})
def exec_cmd(
    command: Annotated[list[str], typer.Argument(help="The command and its arguments (after --).")],
    image: Annotated[str, typer.Option(help="Image to boot.")] = "debian",
    accel: Annotated[str, typer.Option(help="auto, kvm or tcg.")] = "auto",
    cpus: Annotated[int, typer.Option(help="Virtual CPUs.")] = 2,
    memory: Annotated[int, typer.Option(help="Memory in MiB.")] = 1024,
    timeout: Annotated[
        float | None, typer.Option(help="Kill the command after SECONDS (exit 124).")
    ] = None,
    network: Annotated[
        str, typer.Option(help="none, or user (NAT; the host's loopback is unreachable).")
    ] = "none",
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="K=V, repeatable.")] = None,
    workdir: Annotated[str, typer.Option(help="Working directory in the guest.")] = "/root",
    copy_in: Annotated[
        list[str] | None,
        typer.Option(
            "--copy-in", help="HOST_SRC:GUEST_DST (SRC becomes DST, like cp -r), repeatable."
        ),
    ] = None,
    copy_out: Annotated[
        list[str] | None,
        typer.Option(
            "--copy-out", help="GUEST_SRC:HOST_DST after the command (SRC becomes DST), repeatable."
        ),
    ] = None,
    boot: Annotated[str, typer.Option(help="fast (no systemd) or systemd.")] = "fast",
    no_snapshot: Annotated[
        bool, typer.Option("--no-snapshot", help="Always boot cold, not from a post-boot snapshot.")
    ] = False,
    json_file: Annotated[
        str | None, typer.Option("--json", help="Write the result document to FILE.")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No vmrunner messages on stderr.")
    ] = False,
) -> None:
    """Boot a fresh VM, run CMD in it (streaming stdout and stderr) and exit with its status."""
    settings = _settings()
    try:
        pairs = []
        for item in env or []:
            k, sep, v = item.partition("=")
            if not sep or not k:
                raise typer.BadParameter(f"--env expects K=V, got {item!r}")
            pairs.append((k, v))
        req = service.ExecRequest(
            argv=tuple(command), image=image, accel=accel, cpus=cpus, memory_mib=memory,
            timeout=timeout, network=network, env=tuple(pairs), workdir=workdir,
            copy_in=tuple(service.CopySpec.parse(c, "--copy-in") for c in copy_in or []),
            copy_out=tuple(service.CopySpec.parse(c, "--copy-out") for c in copy_out or []),
            boot_mode=boot, snapshot=not no_snapshot,
        )  # fmt: skip
        progress = (lambda _m: None) if quiet else _progress
        outcome = run_async(
            service.exec_command(
                settings, req, on_stdout=_writer(sys.stdout), on_stderr=_writer(sys.stderr),
                progress=progress,
            )
        )  # fmt: skip
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    if not quiet:
        note = "" if outcome.accel == "kvm" else " (KVM not functional here: see 'vmrunner doctor')"
        err_console.print(
            f"[dim]vmrunner: ran with accel {outcome.accel}{note}; exit status {outcome.status}[/]"
        )
        if outcome.result.error:
            err_console.print(f"vmrunner: {outcome.result.error}")
    if json_file:
        with open(json_file, "w") as fh:
            json.dump(outcome.to_dict(), fh, indent=2)
    raise typer.Exit(outcome.status)


@image_app.command("build")
def image_build(
    name: Annotated[str, typer.Argument(help="Image name.")] = "debian",
    force: Annotated[bool, typer.Option(help="Rebuild even if cached.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Build an image (cached by a hash of its recipe)."""
    try:
        image = service.build_image(_settings(), name, force=force, progress=_progress)
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(json.dumps(image.to_dict(), indent=2))
    else:
        out_console.print(
            f"{image.name} {image.digest[:16]} kernel {image.kernel_version} at {image.path}"
        )


@image_app.command("list")
def image_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List built images."""
    images = service.list_images(_settings())
    if as_json:
        print(json.dumps([i.to_dict() for i in images], indent=2))
        return
    table = Table("name", "digest", "kernel", "disk", "built in")
    for i in images:
        d = i.to_dict()
        table.add_row(
            i.name,
            i.digest[:16],
            i.kernel_version,
            f"{int(str(d['disk_bytes'])) >> 20} MiB",
            f"{i.build_seconds:.0f} s",
        )
    out_console.print(table)


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    refresh: Annotated[
        bool, typer.Option(help="Re-run the KVM check instead of using the cached one.")
    ] = False,
) -> None:
    """Check the host: QEMU, tools, KVM (present, API, functional), directories, images."""
    try:
        report = service.doctor(_settings(), refresh_kvm=refresh)
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        raise typer.Exit(0 if report.ok else 1)
    k = report.kvm
    out_console.print(f"QEMU: {report.qemu['version'] or 'not found'}")
    for tool, path in report.tools.items():
        out_console.print(f"  {tool}: {path or '[red]missing[/]'}")
    out_console.print(f"KVM: present={k.present} api={k.api} functional={k.functional}")
    out_console.print(f"  {k.detail}")
    out_console.print(f"acceleration used by --accel auto: {'kvm' if k.functional else 'tcg'}")
    out_console.print(f"state: {report.state_dir}\ncache: {report.cache_dir}")
    out_console.print(
        f"free disk: {report.free_disk_bytes >> 30} GiB; images: {len(report.images)}"
    )
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def gc(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Remove what killed vmrunner processes left behind (VMs, overlays, sockets, temp dirs)."""
    report = service.gc(_settings())
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        out_console.print(
            f"removed {len(report.vm_dirs)} VM directories, killed {len(report.vmm_pids)} VM processes, "
            f"removed {len(report.tmp_dirs)} temporary directories"
        )


def main() -> None:
    app()
