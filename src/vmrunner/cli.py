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
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vmrunner import service
from vmrunner.cli_learn import learn_app
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
app.add_typer(learn_app, name="learn")
err_console = Console(stderr=True, highlight=False)
out_console = Console(highlight=False)


def _settings() -> Settings:
    return load_settings()


@app.callback()
def _startup() -> None:
    """Every command first reaps what a killed vmrunner left behind."""
    try:
        service.gc(_settings())
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    except OSError as exc:  # e.g. an unwritable state directory
        err_console.print(f"vmrunner: error: cannot use the state directory: {exc}")
        raise typer.Exit(HARNESS_EXIT) from exc


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
        hint = learning_hint(outcome.learning)
        if hint:
            err_console.print(f"[yellow]vmrunner: {hint}[/]")
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


# ---- systest (system tests) -------------------------------------------------------------


@app.command("systest")
def systest_cmd(
    config: Annotated[
        str, typer.Argument(help="A recipe file (debian) or a flake reference (nixos).")
    ],
    flavor: Annotated[str, typer.Option(help="debian or nixos.")] = "debian",
    host: Annotated[
        str | None, typer.Option(help="nixosConfigurations attribute (nixos flavour).")
    ] = None,
    boot_timeout: Annotated[
        float, typer.Option("--boot-timeout", help="Boot deadline in SECONDS.")
    ] = 300.0,
    accel: Annotated[str, typer.Option(help="auto, kvm or tcg.")] = "auto",
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
) -> None:
    """Build, install, boot and check a system configuration in a VM (exit 0 only if all passed)."""
    from pathlib import Path

    from vmrunner.systest.artifacts import write_reports
    from vmrunner.systest.result import render_text
    from vmrunner.systest.runner import Systest, SystestRequest

    if flavor not in ("debian", "nixos") or accel not in ("auto", "kvm", "tcg"):
        err_console.print("vmrunner: error: --flavor debian|nixos, --accel auto|kvm|tcg")
        raise typer.Exit(HARNESS_EXIT)
    req = SystestRequest(
        config=config, flavor=flavor, host=host, boot_timeout=boot_timeout, accel=accel,
        keep_artifacts=Path(keep_artifacts) if keep_artifacts else None,
        checks=Path(checks) if checks else None, concurrency=concurrency,
        cancel_in_progress=cancel_in_progress,
    )  # fmt: skip
    run = Systest(_settings(), req, (lambda _m: None) if quiet else _progress)
    code: int | None = None
    try:
        run_async(run.run())
    except typer.Exit as exc:  # cancelled: the result is still written
        code = exc.exit_code
    doc = run.result.to_dict()
    write_reports(
        doc, Path(json_file) if json_file else None, Path(junit_file) if junit_file else None
    )
    out_console.print(render_text(doc), end="", markup=False, soft_wrap=True)
    hint = learning_hint(doc.get("learning"))
    if hint:
        out_console.print(f"learning: {hint}", style="yellow", markup=False)
    raise typer.Exit(code if code is not None else run.result.exit_status)


# ---- workflows: check, run, schema ------------------------------------------------------


@app.command()
def check(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Files or directories (default .github/workflows).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Validate workflow files the way GitHub does: one FILE:LINE:COL: message per error."""
    from vmrunner import runs

    try:
        found = runs.check_paths(paths or [], Path.cwd())
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    errors = [d for d in found if d.severity == "error"]
    if as_json:
        items = [{**d.__dict__, "severity": str(d.severity)} for d in found]
        print(json.dumps({"ok": not errors, "diagnostics": items}, indent=2))
    else:
        for d in found:
            print(d.format() if d.severity == "error" else f"{d.format()} (warning)")
    raise typer.Exit(1 if errors else 0)


@app.command()
def schema(
    name: Annotated[str, typer.Argument(help="Which schema: result or recipe.")] = "result",
) -> None:
    """Print a JSON Schema: ``result`` (every --json result: run and systest) or ``recipe``
    (a Debian system-test recipe)."""
    from vmrunner.results import RESULT_SCHEMA
    from vmrunner.systest.recipe import recipe_schema

    schemas = {"result": RESULT_SCHEMA, "recipe": recipe_schema()}
    if name not in schemas:
        err_console.print(f"vmrunner: unknown schema {name!r} (known: {', '.join(schemas)})")
        raise typer.Exit(HARNESS_EXIT)
    print(json.dumps(schemas[name], indent=2))


class TerminalReporter:
    """Live output grouped by job and step, coloured on a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.depth: dict[str, int] = {}

    def _out(self, job: str, text: str, style: str = "") -> None:
        indent = "  " * self.depth.get(job, 0)
        self.console.print(f"[cyan]\\[{escape(job)}][/] ", end="", soft_wrap=True)
        self.console.print(f"{indent}{text}", style=style or None, markup=False, soft_wrap=True)

    def job_started(self, job: str) -> None:
        self._out(job, "⭐ job started", "bold")

    def step_started(self, job: str, step: str) -> None:
        self.depth[job] = 0
        self._out(job, f"▶ {step}", "bold blue")

    def line(self, job: str, text: str, stream: str) -> None:
        self._out(job, f"  {text}", "yellow" if stream == "stderr" else "")

    def group(self, job: str, title: str | None) -> None:
        if title is None:
            self.depth[job] = max(0, self.depth.get(job, 0) - 1)
            return
        self._out(job, f"  ▼ {title}", "magenta")
        self.depth[job] = self.depth.get(job, 0) + 1

    def annotation(self, job: str, note: Any) -> None:
        where = f" ({note.file}:{note.line})" if note.file else ""
        style = {"error": "bold red", "warning": "yellow"}.get(note.level, "cyan")
        self._out(job, f"  {note.level}{where}: {note.message}", style)

    def step_finished(self, job: str, step: Any) -> None:
        mark = {"success": "✅", "failure": "❌", "skipped": "⏭"}.get(step.outcome, "•")
        extra = " (continue-on-error)" if step.outcome != step.conclusion else ""
        timed = " (timed out)" if step.timed_out else ""
        style = "green" if step.conclusion == "success" else "red"
        self._out(
            job, f"{mark} {step.name}: {step.outcome}{timed}{extra} [{step.duration_s:.1f}s]", style
        )

    def job_finished(self, job: str, entry: Any) -> None:
        style = {"success": "bold green", "failure": "bold red"}.get(entry.status, "dim")
        self._out(job, f"🏁 job {entry.status}", style)

    def message(self, text: str) -> None:
        self.console.print(f"[dim]vmrunner:[/] {escape(text)}")


def _pairs(items: list[str] | None, flag: str, sep: str = "=") -> tuple[tuple[str, str], ...]:
    from vmrunner.runs import parse_pairs

    return parse_pairs(items or [], flag, sep)


@app.command()
def run(
    workflow: Annotated[
        list[Path] | None,
        typer.Option("--workflow", "-W", help="A workflow file or directory (repeatable)."),
    ] = None,
    job: Annotated[list[str] | None, typer.Option("--job", "-j", help="Run only JOB (and what it needs).")] = None,
    event: Annotated[str, typer.Option("--event", "-e", help="The event name.")] = "push",
    eventpath: Annotated[Path | None, typer.Option("--eventpath", help="The event payload (JSON).")] = None,
    input_: Annotated[list[str] | None, typer.Option("--input", help="K=V, repeatable.")] = None,
    secret: Annotated[list[str] | None, typer.Option("--secret", "-s", help="K=V, repeatable.")] = None,
    secret_file: Annotated[Path | None, typer.Option("--secret-file", help="K=V lines.")] = None,
    var: Annotated[list[str] | None, typer.Option("--var", help="K=V, repeatable.")] = None,
    matrix: Annotated[list[str] | None, typer.Option("--matrix", help="K:V: only those combinations.")] = None,
    max_parallel: Annotated[int | None, typer.Option("--max-parallel", help="At most N jobs at once.")] = None,
    accel: Annotated[str, typer.Option(help="auto, kvm or tcg.")] = "auto",
    actions_dir: Annotated[
        list[Path] | None, typer.Option("--actions-dir", help="Where owner/repo actions are found.")
    ] = None,
    json_file: Annotated[str | None, typer.Option("--json", help="Write the result document to FILE.")] = None,
) -> None:  # fmt: skip
    """Run the workflows the event triggers (default: push of the current commit), each
    job in a fresh VM; exit 0 only if every job that ran succeeded."""
    from vmrunner import runs
    from vmrunner.results import render_text

    settings = _settings()
    try:
        secrets = _pairs(secret, "--secret")
        if secret_file is not None:
            secrets = runs.read_secret_file(secret_file) + secrets
        req = runs.RunRequest(
            workdir=Path.cwd(), workflows=tuple(workflow or ()), jobs=tuple(job or ()), event=event,
            event_path=eventpath, inputs=_pairs(input_, "--input"), secrets=secrets,
            vars=_pairs(var, "--var"), matrix=_pairs(matrix, "--matrix", ":"),
            max_parallel=max_parallel, accel=accel, actions_dirs=tuple(actions_dir or ()),
        )  # fmt: skip
        outcome = run_async(runs.run_workflows(settings, req, TerminalReporter(out_console)))
    except VmrunnerError as exc:
        raise _fail(exc) from exc
    if json_file:
        Path(json_file).write_text(json.dumps(outcome.document, indent=2))
    if outcome.nothing_triggered:
        reasons = "; ".join(f"{f}: {r}" for f, r in outcome.not_triggered) or "no workflow files"
        out_console.print(f"nothing to run: no workflow is triggered by '{event}' ({reasons})")
        raise typer.Exit(0)
    out_console.print(render_text(outcome.document), markup=False)
    hint = learning_hint(outcome.document.get("learning"))
    if hint:
        out_console.print(f"learning: {hint}", style="yellow", markup=False)
    raise typer.Exit(outcome.exit_status)
