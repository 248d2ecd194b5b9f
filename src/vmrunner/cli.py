"""The ``vmrunner`` command line: parses flags, calls the service layer, prints.

Exit statuses: ``exec`` exits with the command's status (124 when its timeout
killed it); 125 means vmrunner itself failed (harness error, bad flags), as
coreutils ``timeout`` and ``env`` do. Other commands exit 0 on success, 1 on a
failed check, 125 on a harness error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vmrunner.cli_agents import init_app, mcp_command
from vmrunner.cli_artifacts import artifacts_cmd
from vmrunner.cli_base import (
    HARNESS_EXIT,
    Accel,
    Boot,
    Flavor,
    Network,
    _fail,
    _progress,
    _services,
    _settings,
    err_console,
    learning_hint,
    out_console,
    run_async,
)
from vmrunner.cli_learn import learn_app
from vmrunner.cli_run import run_command
from vmrunner.cli_runs import runs_app
from vmrunner.cli_serve import serve, serve_background, worker
from vmrunner.cli_tokens import token_app
from vmrunner.errors import VmrunnerError

if TYPE_CHECKING:
    from vmrunner.services.core import Services


app = typer.Typer(
    name="vmrunner",
    help="Run CI work inside throwaway virtual machines, and learn from every command run.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is shown as written: no markup, no :emoji: codes
)
image_app = typer.Typer(help="Build and list guest images.", no_args_is_help=True)
app.add_typer(image_app, name="image")
app.add_typer(learn_app, name="learn")
app.add_typer(runs_app, name="runs")
runs_app.command("artifacts")(artifacts_cmd)
app.command("serve")(serve)
app.command("worker")(worker)
app.command("serve-background", hidden=True)(serve_background)
app.add_typer(token_app, name="token")
app.add_typer(init_app, name="init")
app.command("mcp")(mcp_command)
app.command("run")(run_command)


def _version(value: bool) -> None:
    if value:
        from vmrunner import __version__

        print(f"vmrunner {__version__}")
        raise typer.Exit(0)


@app.callback()
def _startup(
    verbose: Annotated[
        int,
        typer.Option("--verbose", "-v", count=True, help="More log output (-v info, -vv debug)."),
    ] = 0,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Logging only: commands that need no VM and no store (``--help``, ``check``,
    ``schema``) touch no state directory."""
    if verbose:
        from vmrunner.logs import configure

        configure(verbose)


def _writer(stream: Any) -> Callable[[bytes], None]:
    buf = stream.buffer

    def write(data: bytes) -> None:
        buf.write(data)
        buf.flush()

    return write


@app.command("exec", context_settings={"allow_interspersed_args": False})
def exec_cmd(
    command: Annotated[list[str], typer.Argument(help="The command and its arguments (after --).")],
    image: Annotated[
        str | None, typer.Option(help="Image to boot (default: the default_image setting).")
    ] = None,
    accel: Annotated[
        Accel | None, typer.Option(help="Acceleration (default: the accel setting).")
    ] = None,
    cpus: Annotated[int | None, typer.Option(help="Virtual CPUs (default: cpus setting).")] = None,
    memory: Annotated[
        int | None, typer.Option(help="Memory in MiB (default: memory_mib setting).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Kill the command after SECONDS (exit 124).")
    ] = None,
    network: Annotated[
        Network, typer.Option(help="none, or user (NAT; the host's loopback is unreachable).")
    ] = Network.none,
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
    boot: Annotated[Boot, typer.Option(help="fast (no systemd) or systemd.")] = Boot.fast,
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
    from vmrunner.services.exec import CopySpec, ExecRequest, run_exec

    pairs = []
    for item in env or []:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise typer.BadParameter(f"--env expects K=V, got {item!r}")
        pairs.append((k, v))
    with _services() as services:
        try:
            req = ExecRequest(
                argv=tuple(command), image=image, accel=accel.value if accel else None, cpus=cpus,
                memory_mib=memory, timeout=timeout, network=network.value, env=tuple(pairs), workdir=workdir,
                copy_in=tuple(CopySpec.parse(c, "--copy-in") for c in copy_in or []),
                copy_out=tuple(CopySpec.parse(c, "--copy-out") for c in copy_out or []),
                boot_mode=boot.value, snapshot=not no_snapshot,
            )  # fmt: skip
            progress = (lambda _m: None) if quiet else _progress
            doc = run_async(
                run_exec(services, req, on_stdout=_writer(sys.stdout),
                         on_stderr=_writer(sys.stderr), progress=progress)
            )  # fmt: skip
        except VmrunnerError as exc:
            raise _fail(exc) from exc
    if not quiet:
        note = "" if doc["accel"] == "kvm" else " (KVM not functional here: see 'vmrunner doctor')"
        _progress(
            f"run {doc['id']}: ran with accel {doc['accel']}{note}; exit status {doc['exit_status']}"
        )
        for error in doc["errors"]:
            _progress(f"{error['kind']}: {error['message']}")
        hint = learning_hint(doc.get("learning"))
        if hint:
            err_console.print(f"vmrunner: {hint}", style="yellow")
    if json_file:
        Path(json_file).write_text(json.dumps(doc, indent=2))
    raise typer.Exit(int(doc["exit_status"]))


@image_app.command("build")
def image_build(
    name: Annotated[str, typer.Argument(help="Image name.")] = "debian",
    force: Annotated[bool, typer.Option(help="Rebuild even if cached.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Build an image (cached by a hash of its recipe)."""
    try:
        from vmrunner.cli_live import StageBar
        from vmrunner.services.machines import build_image, gc

        settings = _settings()
        gc(settings)
        with StageBar(err_console) as bar:
            image = build_image(settings, name, force=force, progress=bar)
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
    from vmrunner.services.machines import list_images

    images = list_images(_settings())
    if as_json:
        print(json.dumps([i.to_dict() for i in images], indent=2))
        return
    from rich.table import Table

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
        from vmrunner.services.machines import doctor as check_host

        report = check_host(_settings(), refresh_kvm=refresh)
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        raise typer.Exit(0 if report.ok else 1)
    k = report.kvm
    out_console.print(f"QEMU: {report.qemu['version'] or 'not found'}")
    for tool, path in report.tools.items():
        out_console.print(f"  {tool}: {path or 'missing'}", style=None if path else "red")
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
    from vmrunner.services.machines import gc as collect

    try:
        report = collect(_settings())
        with _services(reap_vms=False) as services:
            interrupted = services.reap_interrupted()
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(json.dumps({**report.to_dict(), "interrupted_runs": interrupted}, indent=2))
    else:
        out_console.print(
            f"removed {len(report.vm_dirs)} VM directories, killed {len(report.vmm_pids)} VM processes, "
            f"removed {len(report.tmp_dirs)} temporary directories; "
            f"marked {len(interrupted)} interrupted runs"
        )


def main() -> None:
    app()


# ---- systest (system tests) -------------------------------------------------------------


@app.command("systest")
def systest_cmd(
    config: Annotated[
        str, typer.Argument(help="A recipe file (debian) or a flake reference (nixos).")
    ],
    flavor: Annotated[Flavor, typer.Option(help="debian or nixos.")] = Flavor.debian,
    host: Annotated[
        str | None, typer.Option(help="nixosConfigurations attribute (nixos flavour).")
    ] = None,
    boot_timeout: Annotated[
        float, typer.Option("--boot-timeout", help="Boot deadline in SECONDS.")
    ] = 300.0,
    accel: Annotated[
        Accel | None, typer.Option(help="Acceleration (default: the accel setting).")
    ] = None,
    json_file: Annotated[
        str | None, typer.Option("--json", help="Write the result document to FILE.")
    ] = None,
    junit_file: Annotated[
        str | None, typer.Option("--junit", help="Write JUnit XML to FILE.")
    ] = None,
    keep_artifacts: Annotated[
        str | None,
        typer.Option(
            "--keep-artifacts",
            help="Keep the console and build logs, phase logs, recipe, junit.xml and result.json in DIR.",
        ),
    ] = None,
    checks: Annotated[
        str | None,
        typer.Option("--checks", help="A YAML FILE of runtime checks (`checks:` as in a recipe)."),
    ] = None,
    concurrency: Annotated[
        str | None,
        typer.Option(
            help="Concurrency GROUP (e.g. the branch): one systest runs per group, one waits, "
            "and a newer one replaces the waiting one."
        ),
    ] = None,
    cancel_in_progress: Annotated[
        bool,
        typer.Option(
            "--cancel-in-progress", help="With --concurrency: cancel the running one too."
        ),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress messages on stderr.")
    ] = False,
    compare: Annotated[
        str | None,
        typer.Option("--compare", help="A previous attempt's RUN_ID: add what changed since it."),
    ] = None,
) -> None:
    """Build, install, boot and check a system configuration in a VM (exit 0 only if all passed).

    The nixos flavour runs the flake's own run-*-vm script on this host, as you: its
    QEMU gets a scrubbed environment and the firewalled network, but not -sandbox or
    -runas (its 9p shares need your files). Test only flakes you trust."""
    from vmrunner.results.systest import render_text
    from vmrunner.services.systests import SystestRequest, run_systest, write_reports

    req = SystestRequest(
        config=config, flavor=flavor.value, host=host, boot_timeout=boot_timeout,
        accel=accel.value if accel else "",
        keep_artifacts=Path(keep_artifacts) if keep_artifacts else None,
        checks=Path(checks) if checks else None, concurrency=concurrency,
        cancel_in_progress=cancel_in_progress,
    )  # fmt: skip
    code: int | None = None
    with _services() as services:
        try:
            before = _compare_base(services, compare)
            doc = run_async(run_systest(services, req, (lambda _m: None) if quiet else _progress))
            doc = _with_comparison(services, doc, before)
        except typer.Exit as exc:  # Ctrl-C/SIGTERM: the run is kept as cancelled
            code = exc.exit_code
            kept = services.get(services.last_run_id) if services.last_run_id else None
            doc = dict(kept.document or {}) if kept else {}
        except VmrunnerError as exc:
            raise _fail(exc) from exc
    if not doc:
        raise typer.Exit(code or HARNESS_EXIT)
    write_reports(
        doc, Path(json_file) if json_file else None, Path(junit_file) if junit_file else None
    )
    out_console.print(render_text(doc), end="", markup=False, soft_wrap=True)
    if doc.get("comparison"):
        from vmrunner.results.compare import render_text as compare_text

        out_console.print(compare_text(doc["comparison"]), end="", markup=False, soft_wrap=True)
    hint = learning_hint(doc.get("learning"))
    if hint:
        out_console.print(f"learning: {hint}", style="yellow", markup=False)
    raise typer.Exit(code if code is not None else (0 if doc["status"] == "success" else 1))


def _compare_base(services: Services, run_id: str | None) -> dict[str, Any] | None:
    """The document ``systest --compare RUN_ID`` compares with (checked before the run)."""
    from vmrunner.services.comparisons import document

    return document(services, run_id, "--compare") if run_id else None


def _with_comparison(
    services: Services, doc: dict[str, Any], before: dict[str, Any] | None
) -> dict[str, Any]:
    from vmrunner.services.comparisons import attach_comparison

    return attach_comparison(services, doc, before) if before is not None and doc else doc


# ---- workflows: check, run, schema ------------------------------------------------------


@app.command()
def check(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Files or directories (default .github/workflows).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    fetch_actions: Annotated[
        bool,
        typer.Option(
            "--fetch-actions",
            help="Fetch remote actions missing from the action cache (through github_git_url) "
            "to check the inputs steps give them.",
        ),
    ] = False,
) -> None:
    """Validate workflow files the way GitHub does: one FILE:LINE:COL: message per error.
    The inputs of remote actions in vmrunner's action cache are checked against their
    action.yml; an action not there is a note ("not checked"), never an error."""
    from vmrunner.services.checks import check_paths

    try:
        found = check_paths(paths or [], Path.cwd(), fetch_actions=fetch_actions)
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    errors = [d for d in found if d.severity == "error"]
    if as_json:
        items = [{**d.__dict__, "severity": str(d.severity)} for d in found]
        print(json.dumps({"ok": not errors, "diagnostics": items}, indent=2))
    else:
        for d in found:
            print(d.format() if d.severity == "error" else f"{d.format()} ({d.severity})")
    raise typer.Exit(1 if errors else 0)


@app.command()
def schema(
    name: Annotated[str, typer.Argument(help="Which schema: result or recipe.")] = "result",
) -> None:
    """Print a JSON Schema: ``result`` (every --json result: exec, run and systest) or
    ``recipe`` (a Debian system-test recipe)."""
    from vmrunner.results import RESULT_SCHEMA
    from vmrunner.services.checks import recipe_schema

    schemas = {"result": RESULT_SCHEMA, "recipe": recipe_schema()}
    if name not in schemas:
        err_console.print(f"vmrunner: unknown schema {name!r} (known: {', '.join(schemas)})")
        raise typer.Exit(HARNESS_EXIT)
    print(json.dumps(schemas[name], indent=2))
