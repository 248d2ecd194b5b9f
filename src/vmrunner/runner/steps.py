"""Running a job's steps in its VM: ``run:`` scripts, ``actions/checkout`` and composite
actions, with GitHub's step semantics (``if:`` with the implicit ``success()``,
``continue-on-error``, ``timeout-minutes``, env layering, the environment files, workflow
commands, masking).

A ``run:`` step is written to a script file in the guest and run with its shell template,
as the real runner does; the step's environment files live in a directory of their own in
the guest and are copied back and parsed after the step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shlex
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vmrunner.errors import UnsafeArchiveError, UserInputError
from vmrunner.guest.protocol import GuestOpError
from vmrunner.results import Annotation, ErrorEntry, StepEntry
from vmrunner.runner import actions
from vmrunner.runner.context import BUNDLE_REF, GuestLayout, bundle_commit, export_commit
from vmrunner.runner.guest import Guest, resolve_shell
from vmrunner.runner.hashfiles import HashCache, collect_patterns
from vmrunner.runner.output import JobLog, OutputSink, Reporter, unsecure_allowed
from vmrunner.runner.remote_actions import RemoteActions
from vmrunner.runner.values import (
    condition,
    env_value,
    flag_value,
    number_value,
    text_value,
)
from vmrunner.vm.machine import CommandResult, ExecOptions
from vmrunner.workflow.envfiles import (
    add_paths,
    build_path,
    parse_env_file,
    parse_output_file,
    parse_path_file,
    parse_state_file,
)
from vmrunner.workflow.expressions import Functions, JobStatus, to_string
from vmrunner.workflow.masking import Masker
from vmrunner.workflow.model import Step

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IMAGE_OS = "ubuntu22"
"""``ImageOS``, which setup actions read to pick a toolchain build: the images are Debian
12, whose C library runs Ubuntu 22.04's builds."""
MAX_ACTION_DEPTH = 10
INTERNAL_TIMEOUT_S = 120.0
"""How long a command vmrunner runs for a step (its preparation, mkdir) may take."""
CHECKOUT_TIMEOUT_S = 1800.0
INTERNAL_OUTPUT_LIMIT = 64 * 1024
"""Bytes of stdout or stderr such a command may print before it is killed."""
MAX_ENV_FILE_BYTES = 16 << 20
"""Bytes of ``GITHUB_ENV``, ``GITHUB_OUTPUT`` or ``GITHUB_PATH`` a step may write."""
MAX_SUMMARY_BYTES = 1 << 20
"""Bytes of ``GITHUB_STEP_SUMMARY`` kept per step (GitHub's limit too)."""
ENV_FILES_COPY_MAX = 4 * MAX_ENV_FILE_BYTES + MAX_SUMMARY_BYTES + (1 << 20)
"""Bytes of a step's environment-file directory copied to the host at most (each file is
read up to its limit; the rest could only fill the host's disk)."""


class StepSetupError(UserInputError):
    """What vmrunner does in the guest around a step failed (the step fails with this)."""


class _Capped:
    """An output callback that keeps at most ``limit`` bytes and raises past them (which
    kills the command: see ``GuestChannel.exec``)."""

    def __init__(self, what: str, stream: str, limit: int = INTERNAL_OUTPUT_LIMIT) -> None:
        self.what, self.stream, self.limit = what, stream, limit
        self.data = bytearray()

    def __call__(self, chunk: bytes) -> None:
        if len(self.data) + len(chunk) > self.limit:
            raise StepSetupError(
                f"{self.what} printed more than {self.limit} bytes on {self.stream} and was "
                "killed: a program it runs (/bin/sh, a core tool) may have been replaced in the VM"
            )
        self.data += chunk


async def internal(
    guest: Guest, what: str, argv: Sequence[str], stdin: bytes | None = None,
    timeout: float = INTERNAL_TIMEOUT_S, env: Mapping[str, str] | None = None,
    limit: int = INTERNAL_OUTPUT_LIMIT,
) -> CommandResult:  # fmt: skip
    """Run a command vmrunner needs in the guest (with ``env`` over the guest's), under a
    timeout and output caps of ``limit`` bytes; raises :class:`StepSetupError` (naming
    ``what``) when it times out or prints too much."""
    out, err = _Capped(what, "stdout", limit), _Capped(what, "stderr", limit)
    opts = ExecOptions(
        env=dict(env or {}), stdin=stdin, timeout=timeout, on_stdout=out, on_stderr=err
    )
    res = await guest.execute(argv, opts)
    if res.timed_out:
        raise StepSetupError(
            f"{what} did not finish within {timeout:g} s and was killed: a program it runs "
            "(/bin/sh, a core tool) may have been replaced or broken in the VM"
        )
    return dataclasses.replace(res, stdout=bytes(out.data), stderr=bytes(err.data))


# Prepares one run step: its env-file directory, its script (from stdin); then says
# where the shell is and whether the working directory exists.
_PREP = r"""set -e
mkdir -p "$1"; cd "$1"; : > env; : > output; : > path; : > state; : > summary
cat > "$2"
echo "shell=$(command -v "$3" || true)"
echo "python3=$(command -v python3 || true)"
[ -d "$4" ] && echo wd=ok || echo wd=missing
"""

# Checks out a bundle: dest, bundle file, its ref, the sha, the branch (or "": detached).
_NO_GIT = 97
_CHECKOUT = rf"""set -e
command -v git >/dev/null || {{ rm -rf "$1"; mkdir -p "$1"; exit {_NO_GIT}; }}
rm -rf "$1"; mkdir -p "$1"; cd "$1"
git -c init.defaultBranch=main init -q .
git fetch -q "$2" "$3"
if [ -n "$5" ]; then git checkout -q -B "$5" "$4"; else git checkout -q --detach "$4"; fi
rm -rf "$(dirname "$2")"
"""


@dataclass
class JobState:
    """Everything the steps of one job instance share; mutated as the steps run."""

    guest: Guest
    key: str
    contexts: dict[str, Any]
    env: dict[str, str]
    masker: Masker
    reporter: Reporter
    layout: GuestLayout
    host_work: Path
    repo_root: Path
    actions_dirs: Sequence[Path]
    image: str = "debian"
    defaults_shell: str | None = None
    defaults_wd: str | None = None
    deadline: float | None = None
    file_env: dict[str, str] = field(default_factory=dict)
    path_prepend: tuple[str, ...] = ()
    status: JobStatus = "success"
    timed_out: bool = False
    log: JobLog = field(init=False)
    errors: list[ErrorEntry] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    counter: int = 0
    copied_actions: dict[str, str] = field(default_factory=dict)
    hashes: HashCache = field(default_factory=HashCache)
    remote: RemoteActions | None = None
    posts: list[Any] = field(default_factory=list)
    """The ``post`` scripts of the JavaScript actions that ran (``node_actions.Phase``)."""
    pre_states: dict[tuple[int, ...], Any] = field(default_factory=dict)
    """The ``node_actions.NodeRun`` of each ``pre`` that ran, by :attr:`Frame.key` plus the
    step's index: its ``main`` shares what it saved (``GITHUB_STATE``) and its post."""
    node_seen: tuple[str, str] = ("", "")
    # runs a ``uses:`` step (``uses_steps.run_uses``, given by the engine: that module
    # builds on this one, so this one does not import it)
    uses_runner: Any = None
    """The guest's node last found for a JavaScript action, and its ``--version``."""

    def __post_init__(self) -> None:
        # the masks a step adds (add-mask) belong to this job only
        self.masker = self.masker.child()
        self.log = JobLog(self.host_work)  # spooled to disk, not kept in memory
        self.env.setdefault("ImageOS", IMAGE_OS)

    @property
    def workspace(self) -> str:
        return str(self.contexts["github"]["workspace"])

    @property
    def functions(self) -> Functions:
        """What step expressions may call besides the status functions (``hashFiles``)."""
        return Functions(hash_files=self.hashes.lookup)

    async def prepare_hashes(self, step: Step, contexts: Mapping[str, Any]) -> None:
        """Hash, in the guest, every ``hashFiles(...)`` of ``step`` (the workspace now)."""
        fx = Functions(job_status=self.status, hash_files=self.hashes.lookup)
        wanted = collect_patterns(step.node, contexts, fx)
        if wanted:
            await self.hashes.compute(self.guest, self.workspace, wanted)

    def next_id(self) -> int:
        self.counter += 1
        return self.counter


@dataclass
class Frame:
    """A list of steps being run: the job's own, or a composite action's."""

    steps_ctx: dict[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, Any] | None = None
    action_path: str = ""
    env: dict[str, str] = field(default_factory=dict)
    composite: bool = False
    depth: int = 0
    label: str = ""
    sink: OutputSink | None = None
    key: tuple[int, ...] = ()
    """The indexes of the steps (job's, then composites') that led to these steps."""


@dataclass
class StepRun:
    """What running one step's body gave."""

    ok: bool
    exit_code: int | None = None
    timed_out: bool = False
    outputs: dict[str, str] = field(default_factory=dict)
    annotations: tuple[Annotation, ...] = ()


def _contexts(state: JobState, frame: Frame, env: Mapping[str, str]) -> dict[str, Any]:
    github = {**state.contexts["github"], "action_path": frame.action_path}
    return {
        **state.contexts, "github": github, "env": dict(env), "steps": frame.steps_ctx,
        "inputs": state.contexts["inputs"] if frame.inputs is None else dict(frame.inputs),
        "job": {**state.contexts.get("job", {}), "status": state.status},
    }  # fmt: skip


def _default_name(step: Step) -> str:
    if step.uses is not None:
        return f"Run {step.uses.text}"
    first = to_string(getattr(step.run, "value", "") or "").strip().splitlines()
    return f"Run {first[0]}" if first else "Run"


async def run_steps(state: JobState, frame: Frame, steps: Sequence[Step]) -> list[StepEntry]:
    """Run ``steps`` in order; returns one entry per step (skipped ones included)."""
    return [await run_step(state, frame, step) for step in steps]


def _skip(frame: Frame, step_id: str, name: str) -> StepEntry:
    frame.steps_ctx[step_id] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
    return StepEntry(step_id, name, "skipped", "skipped")


async def run_step(state: JobState, frame: Frame, step: Step) -> StepEntry:
    """Decide whether ``step`` runs (``if:``), run it, and record it in ``frame``."""
    step_id = step.id.text if step.id is not None else f"__step{step.index + 1}"
    env = {**state.env, **state.file_env, **frame.env}
    ctx = _contexts(state, frame, env)
    name = _default_name(step)
    if state.timed_out or (state.deadline is not None and time.monotonic() >= state.deadline):
        state.timed_out = True
        return _skip(frame, step_id, name)
    fx = state.functions
    try:
        await state.prepare_hashes(step, ctx)
        name = text_value(step.name, ctx, functions=fx) or name
        if not condition(step.if_, ctx, state.status, fx):
            return _skip(frame, step_id, name)
    except UserInputError as exc:
        return _errored(state, frame, step_id, name, f"step if: {exc}")
    label = f"{frame.label}{name}"
    state.reporter.step_started(state.key, label)
    state.log.append(f"##[step]{label}")
    sink = OutputSink(state.key, state.masker, state.reporter, state.log, parent=frame.sink)
    started = time.monotonic()
    coe = False
    try:
        step_env = env_value(step.env, ctx, fx)
        ctx["env"] = {**env, **step_env}
        sink.parser.allow_unsecure_commands = unsecure_allowed(ctx["env"])
        coe = flag_value(step.continue_on_error, ctx, functions=fx)
        minutes = number_value(step.timeout_minutes, ctx, fx)
        body = run_script if step.uses is None else state.uses_runner
        result = await body(state, frame, step, ctx, step_env, sink, minutes, step_id)
        state.file_env.update(sink.set_env)
        state.path_prepend = add_paths(state.path_prepend, sink.add_path)
    except UserInputError as exc:
        sink.note(f"##[error]{exc}")
        state.errors.append(ErrorEntry("step", state.masker.mask_text(str(exc)), state.key, name))
        result = StepRun(ok=False)
    finally:
        state.hashes.invalidate()  # the step may have changed the workspace
    entry = _finish(state, frame, step_id, name, result, coe, sink, time.monotonic() - started)
    return replace(entry, command=_command_text(step))


def _command_text(step: Step) -> str:
    """The step as written (``run:`` text before expansion, or ``uses: X``): what the
    learning store keys on. Expressions stay unexpanded, so no secret value is in it."""
    if step.uses is not None:
        return f"uses: {step.uses.text}"
    return to_string(getattr(step.run, "value", "") or "").strip()


def _finish(
    state: JobState, frame: Frame, step_id: str, name: str, result: StepRun, coe: bool,
    sink: OutputSink, took: float,
) -> StepEntry:  # fmt: skip
    outcome = "success" if result.ok else "failure"
    conclusion = "success" if result.ok or coe else "failure"
    if conclusion == "failure":
        state.status = "failure"
    masked = {k: state.masker.mask_text(v) for k, v in result.outputs.items()}
    frame.steps_ctx[step_id] = {
        "outputs": dict(result.outputs),
        "outcome": outcome,
        "conclusion": conclusion,
    }
    for note in result.annotations:
        if note.level == "error":
            state.errors.append(
                ErrorEntry(
                    "annotation", note.message, state.key, name, note.file, note.line, note.col
                )
            )
    if result.timed_out:
        state.errors.append(ErrorEntry("timeout", "the step timed out", state.key, name))
    entry = StepEntry(
        step_id, name, outcome, conclusion, result.exit_code, took, sink.tail_text(),  # type: ignore[arg-type]
        result.timed_out, masked, result.annotations,
    )  # fmt: skip
    state.reporter.step_finished(state.key, entry)
    return entry


def _errored(state: JobState, frame: Frame, step_id: str, name: str, message: str) -> StepEntry:
    state.errors.append(ErrorEntry("step", state.masker.mask_text(message), state.key, name))
    state.status = "failure"
    frame.steps_ctx[step_id] = {"outputs": {}, "outcome": "failure", "conclusion": "failure"}
    return StepEntry(step_id, name, "failure", "failure", log_tail=state.masker.mask_text(message))


def _timeout(state: JobState, minutes: float | None) -> tuple[float | None, bool]:
    """The seconds the step may take, and whether that limit is the job's."""
    step_limit = None if minutes is None else minutes * 60
    if state.deadline is None:
        return step_limit, False
    left = max(0.1, state.deadline - time.monotonic())
    if step_limit is None or left < step_limit:
        return left, True
    return step_limit, False


async def run_script(
    state: JobState, frame: Frame, step: Step, ctx: dict[str, Any], step_env: dict[str, str],
    sink: OutputSink, minutes: float | None, step_id: str,
) -> StepRun:  # fmt: skip
    """A ``run:`` step."""
    fx = state.functions
    shell_text = text_value(step.shell, ctx, functions=fx) or None
    if shell_text is None and frame.composite:
        raise actions.ActionError("a run step of a composite action needs 'shell:'")
    shell = resolve_shell(shell_text if frame.composite else shell_text or state.defaults_shell)
    wd = text_value(step.working_directory, ctx, functions=fx) or (
        "" if frame.composite else state.defaults_wd or ""
    )
    wd = (
        wd
        if wd.startswith("/")
        else f"{state.workspace}/{wd}".rstrip("/")
        if wd
        else state.workspace
    )
    n = state.next_id()
    fdir = f"{state.layout.temp}/_runner_file_commands/{n}"
    script_path = f"{state.layout.temp}/{uuid.uuid4()}{shell.extension}"
    script = text_value(step.run, ctx, functions=fx)
    prep = await internal(
        state.guest, "the step's preparation (sh -c)",
        ["sh", "-c", _PREP, "sh", fdir, script_path, shell.argv[0], wd], script.encode(),
    )  # fmt: skip
    if not prep.ok:
        detail = prep.stderr.decode("utf-8", "replace").strip()[-500:]
        raise StepSetupError(f"the step's preparation (sh -c) failed ({prep.status}): {detail}")
    lines = prep.stdout.decode("utf-8", "replace").splitlines()
    facts = dict(line.partition("=")[::2] for line in lines)
    argv = shell.command(script_path)
    if not facts.get("shell"):
        if shell.name == "python" and facts.get("python3"):
            argv[0] = "python3"
        else:
            raise UserInputError(
                f"shell '{shell.name}' is not available: '{shell.argv[0]}' is not installed in "
                f"the VM image '{state.image}' (install it in an earlier step, or use bash, sh or python)"
            )
    if facts.get("wd") != "ok":
        raise UserInputError(f"the working directory '{wd}' does not exist")
    env = {**ctx["env"], **_file_env(fdir), "GITHUB_ACTION": step_id}
    if frame.action_path:
        env["GITHUB_ACTION_PATH"] = frame.action_path
    return await exec_step(state, argv, env, wd, minutes, sink, fdir, n)


def with_path(state: JobState, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the ``PATH`` of a step: what earlier steps added (``GITHUB_PATH``)
    before the environment's (or the guest's default)."""
    if not state.path_prepend:
        return dict(env)
    return {**env, "PATH": build_path(state.path_prepend, env.get("PATH", BASE_PATH))}


async def exec_step(
    state: JobState, argv: Sequence[str], env: dict[str, str], cwd: str, minutes: float | None,
    sink: OutputSink, fdir: str, n: int, saved: dict[str, str] | None = None,
) -> StepRun:  # fmt: skip
    """Run a step's command (``fdir`` holds its environment files, prepared), under the
    step's or the job's time limit; apply its files (``GITHUB_STATE`` into ``saved``)."""
    env = with_path(state, env)
    timeout, is_job_limit = _timeout(state, minutes)
    state.log.append(f"##[command]{shlex.join(argv)}")
    res = await state.guest.execute(
        argv,
        ExecOptions(
            env=env, cwd=cwd, timeout=timeout, on_stdout=sink.stdout, on_stderr=sink.stderr
        ),
    )
    sink.close()
    if res.timed_out:
        state.timed_out = state.timed_out or is_job_limit
        limit = "job" if is_job_limit else "step"
        sink.note(f"##[error]The {limit} timed out after {timeout:.1f} s; the command was killed")
    elif not res.ok:
        sink.note(f"##[error]Process completed with exit code {res.status}.")
    outputs = await _read_files(state, fdir, n, sink, saved)
    ok = res.ok and not sink.invalid
    return StepRun(ok and outputs is not None, res.exit_code, res.timed_out,
                   {**sink.outputs, **(outputs or {})}, tuple(sink.annotations))  # fmt: skip


def _file_env(fdir: str) -> dict[str, str]:
    return {
        "GITHUB_ENV": f"{fdir}/env", "GITHUB_OUTPUT": f"{fdir}/output", "GITHUB_PATH": f"{fdir}/path",
        "GITHUB_STATE": f"{fdir}/state", "GITHUB_STEP_SUMMARY": f"{fdir}/summary",
    }  # fmt: skip


async def _read_files(
    state: JobState, fdir: str, n: int, sink: OutputSink, saved: dict[str, str] | None = None
) -> dict[str, str] | None:
    """Apply the step's environment files (``GITHUB_STATE`` into ``saved`` when given);
    its outputs, or None when one is invalid."""
    host = state.host_work / f"files-{n}"
    names = ("env", "output", "path", "summary", *(("state",) if saved is not None else ()))
    try:  # at most what is read of them comes to the host, and it goes once read
        await state.guest.copy_out(fdir, host, max_bytes=ENV_FILES_COPY_MAX)
        text = {name: _read_file(host, name, sink) for name in names}
        env = parse_env_file(text["env"])
        outputs = parse_output_file(text["output"]).as_dict()
        if saved is not None:
            saved.update(parse_state_file(text["state"]).as_dict())
    except UserInputError as exc:
        sink.note(f"##[error]{exc}")
        return None
    except (GuestOpError, UnsafeArchiveError) as exc:
        sink.note(f"##[error]cannot read the step's environment files: {exc}")
        return None
    finally:
        shutil.rmtree(host, ignore_errors=True)
    for issue in env.issues:
        sink.note(f"##[warning]{issue}")
    state.file_env.update(env.as_dict())
    state.path_prepend = add_paths(state.path_prepend, parse_path_file(text["path"]))
    if text["summary"].strip():
        state.summary.append(state.masker.mask_text(text["summary"]))
    return outputs


_FILE_VARS = {"env": "GITHUB_ENV", "output": "GITHUB_OUTPUT", "path": "GITHUB_PATH",
              "summary": "GITHUB_STEP_SUMMARY", "state": "GITHUB_STATE"}  # fmt: skip


def _read_file(host: Path, name: str, sink: OutputSink) -> str:
    """One environment file as copied out: "" when the step removed it, an error when
    it is not a regular file or too big (a summary over its limit is dropped, warned)."""
    path, var = host / name, _FILE_VARS[name]
    if not path.exists() and not path.is_symlink():
        sink.note(f"##[warning]the step removed {var}; nothing was read from it")
        return ""
    if path.is_symlink() or not path.is_file():
        raise StepSetupError(f"{var} ({name}) was replaced by something that is not a file")
    size = path.stat().st_size
    limit = MAX_SUMMARY_BYTES if name == "summary" else MAX_ENV_FILE_BYTES
    if size > limit and name == "summary":
        sink.note(f"##[warning]{var} is {size} bytes, more than {limit}: it is not kept")
        return ""
    if size > limit:
        raise StepSetupError(f"{var} is {size} bytes, more than the limit of {limit}")
    with path.open("rb") as f:
        return f.read(limit).decode("utf-8", "replace")


def action_inputs(
    action: actions.Action, with_: Mapping[str, str], ctx: Mapping[str, Any]
) -> dict[str, str]:
    """The inputs of ``action``: ``with_`` over its defaults (evaluated in ``ctx``). Raises
    :class:`~vmrunner.runner.actions.ActionError` for a required input not given."""
    inputs: dict[str, str] = dict(with_)
    for declared in action.inputs:
        if declared.name not in inputs:
            if declared.required and declared.default is None:
                raise actions.ActionError(
                    f"The action '{action.uses}' needs its required input '{declared.name}' "
                    "(give it under with:)"
                )
            inputs[declared.name] = text_value(declared.default, ctx)
    return inputs


async def checkout(state: JobState, with_: Mapping[str, str], sink: OutputSink) -> StepRun:
    """``actions/checkout``: a git clone of the run's commit (or ``ref``) in the workspace
    (or ``path`` under it), on the pushed branch for the run's own commit, detached
    otherwise; no remote. Without git in the image the tree is copied without ``.git``.
    Another repository is an error."""
    repo = with_.get("repository", "")
    github = state.contexts["github"]
    own = str(github["repository"])
    if repo and repo.lower() != own.lower():
        raise actions.ActionError(
            f"actions/checkout of another repository ('{repo}') needs the network; vmrunner "
            "checks out only the repository being run"
        )
    ref = with_.get("ref") or str(github["sha"])
    path = with_.get("path", "").strip("/")
    dest = f"{state.workspace}/{path}" if path else state.workspace
    n = state.next_id()
    export = state.host_work / f"checkout-{n}"
    sha = await asyncio.to_thread(bundle_commit, state.repo_root, ref, export)
    branch = ""
    if not with_.get("ref") and str(github.get("ref", "")).startswith("refs/heads/"):
        branch = str(github["ref"]).removeprefix("refs/heads/")
    bundle_dir = f"{state.layout.temp}/_checkout/{n}"
    await internal(
        state.guest, "mkdir for the checkout", ["mkdir", "-p", f"{state.layout.temp}/_checkout"]
    )
    await state.guest.copy_in(export / "bundle", bundle_dir)
    argv = ["sh", "-c", _CHECKOUT, "sh", dest, f"{bundle_dir}/repo.bundle", BUNDLE_REF, sha, branch]
    res = await internal(state.guest, "the checkout (sh -c, git)", argv, timeout=CHECKOUT_TIMEOUT_S)
    if res.status == _NO_GIT:
        await asyncio.to_thread(export_commit, state.repo_root, sha, export / "tree")
        await state.guest.copy_in(export / "tree", dest)
    elif not res.ok:
        detail = res.stderr.decode("utf-8", "replace").strip()[-1000:]
        raise actions.ActionError(f"git checkout of {ref} in the VM failed: {detail}")
    sink.note(f"Checked out {ref} ({sha}) of {own} into {dest}", "stdout")
    return StepRun(ok=True, exit_code=0, outputs={"ref": ref, "commit": sha})


async def run_composite(
    state: JobState, frame: Frame, action: actions.Action, ctx: dict[str, Any],
    inputs: Mapping[str, str], guest_dir: str, step_env: dict[str, str], minutes: float | None,
    sink: OutputSink,
) -> StepRun:  # fmt: skip
    """A composite action (in the guest at ``guest_dir``): its steps run in this job with
    their own ``steps`` and ``inputs`` contexts; its outputs are evaluated after them."""
    inner = Frame(
        inputs=inputs, action_path=guest_dir, env={**frame.env, **step_env}, composite=True,
        depth=frame.depth + 1, label=f"{frame.label}{action.uses} > ", sink=sink, key=frame.key,
    )  # fmt: skip
    saved, deadline = state.status, state.deadline
    if minutes is not None:
        limit = time.monotonic() + minutes * 60
        state.deadline = limit if deadline is None else min(deadline, limit)
    try:
        entries = await run_steps(state, inner, action.steps)
    finally:
        failed = state.status == "failure"
        state.status, state.deadline = saved, deadline
    out_ctx = _contexts(state, inner, {**state.env, **state.file_env, **inner.env})
    outputs = {name: text_value(node, out_ctx) for name, node in action.outputs}
    timed_out = any(e.timed_out for e in entries)
    return StepRun(not failed, 1 if failed else 0, timed_out, outputs)
