"""What one ``vmrunner run`` asks for (:class:`RunRequest`), and how act's flags become
one (:func:`run_request`): the event positional and its name check, ``-C`` resolving
every relative path, the dotenv files (``--env-file``, ``--secret-file``, ``--var-file``,
``--input-file``, each read from its act default name when present), the ``K[=V]`` flags
over them, and the ``-P LABEL=IMAGE`` platform map.

Pure request parsing: reads the named files and the environment given, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vmrunner.errors import ConfigError
from vmrunner.services.checks import Pairs, check_event, flag_pairs, read_dotenv


@dataclass(frozen=True)
class RunRequest:
    """One ``vmrunner run``. ``env`` is act's ``--env`` layer (over the workflow's and
    the job's ``env``); ``platforms`` maps ``runs-on`` labels to images over the config
    file's ``label_images``; a job whose label maps to no image is skipped, or an error
    with ``strict_platforms``."""

    workdir: Path
    workflows: tuple[Path, ...] = ()
    jobs: tuple[str, ...] = ()
    event: str = "push"
    event_path: Path | None = None
    inputs: Pairs = ()
    secrets: Pairs = ()
    vars: Pairs = ()
    matrix: Pairs = ()
    max_parallel: int | None = None
    accel: str = ""  # "" means the settings' accel
    actions_dirs: tuple[Path, ...] = ()
    env: Pairs = ()
    actor: str | None = None
    default_branch: str | None = None
    platforms: Pairs = ()
    strict_platforms: bool = False
    # the server's dispatcher already decided that the event triggers ``workflows`` (with
    # GitHub's changed files, which a checkout cannot always tell): no second decision
    triggered: bool = False


@dataclass(frozen=True)
class RunFlags:
    """The ``run`` flags as typed by a person (act's names); see :func:`run_request`."""

    event: str = "push"
    directory: Path = Path()
    workflows: Sequence[Path] = ()
    jobs: Sequence[str] = ()
    event_path: Path | None = None
    env: Sequence[str] = ()
    env_file: Path | None = None
    secrets: Sequence[str] = ()
    secret_file: Path | None = None
    vars: Sequence[str] = ()
    var_file: Path | None = None
    inputs: Sequence[str] = ()
    input_file: Path | None = None
    matrix: Sequence[str] = ()
    platforms: Sequence[str] = ()
    strict_platforms: bool = False
    actor: str | None = None
    default_branch: str | None = None
    concurrent_jobs: int | None = None
    accel: str = ""
    actions_dirs: Sequence[Path] = ()


DEFAULT_FILES = {"env": ".env", "secret": ".secrets", "var": ".vars", "input": ".input"}
"""act's default file names, read from the ``-C`` directory when they exist."""


def _resolve(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else base / path


def _layer(
    base: Path, kind: str, file: Path | None, items: Sequence[str], bare: str,
    environ: Mapping[str, str],
) -> Pairs:  # fmt: skip
    """The dotenv file's pairs (explicit, or act's default name when present), then the
    flag's pairs over them (a flag wins, as in act)."""
    flag = f"--{kind}"
    if file is not None:
        from_file = read_dotenv(_resolve(base, file), f"{flag}-file", environ)
    elif (base / DEFAULT_FILES[kind]).is_file():
        from_file = read_dotenv(base / DEFAULT_FILES[kind], f"{flag}-file", environ)
    else:
        from_file = ()
    given = flag_pairs(items, flag, bare=bare, environ=environ)
    merged = dict(from_file)
    merged.update(given)
    return tuple(merged.items())


def run_request(flags: RunFlags, environ: Mapping[str, str]) -> RunRequest:
    """The request of ``flags``; raises ``ConfigError`` naming the flag for an unknown
    event, a missing or unparsable file, or a malformed pair. Bare ``-s K`` and
    ``--var K`` take the value of ``K`` from ``environ`` (an error when unset); a bare
    ``--env K`` takes it from ``environ`` or is empty."""
    check_event(flags.event)
    base = flags.directory.resolve()
    if not base.is_dir():
        raise ConfigError(f"-C/--directory {flags.directory}: not a directory")
    if flags.concurrent_jobs is not None and flags.concurrent_jobs < 1:
        raise ConfigError(f"--concurrent-jobs must be at least 1, got {flags.concurrent_jobs}")
    return RunRequest(
        workdir=base, workflows=tuple(_resolve(base, p) for p in flags.workflows),
        jobs=tuple(flags.jobs), event=flags.event,
        event_path=_resolve(base, flags.event_path) if flags.event_path else None,
        inputs=_layer(base, "input", flags.input_file, flags.inputs, "error", environ),
        secrets=_layer(base, "secret", flags.secret_file, flags.secrets, "environ", environ),
        vars=_layer(base, "var", flags.var_file, flags.vars, "environ", environ),
        env=_layer(base, "env", flags.env_file, flags.env, "environ-or-empty", environ),
        matrix=flag_pairs(flags.matrix, "--matrix", sep=":"),
        platforms=flag_pairs(flags.platforms, "-P/--platform"),
        strict_platforms=flags.strict_platforms, actor=flags.actor,
        default_branch=flags.default_branch, max_parallel=flags.concurrent_jobs,
        accel=flags.accel, actions_dirs=tuple(_resolve(base, p) for p in flags.actions_dirs),
    )  # fmt: skip
