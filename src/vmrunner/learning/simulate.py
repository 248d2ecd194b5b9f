"""A deterministic synthetic CI history, for the benchmark and the replay tests.

Repositories have jobs; a job is a fixed list of steps (clone, install with a
version pin, build, test, ...). Each step has a latent failure rate (most are
reliable, some are flaky). Now and then a commit *breaks* a step of a job: it then
fails with the same kind of error until a later run bumps the job's install pin,
which fixes it (so lessons with candidate fixes appear). A failed step ends its job
run. Outputs carry variable parts (module names, numbers, paths, hex ids) so that
masking and clustering have work to do. Same seed, same history; no clock, no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from vmrunner.learning.results import Observation

_STEPS = (
    "git clone --depth 1 https://example.com/{repo}.git",
    "pip install -r requirements.txt {pkg}=={ver}",
    "python3 -c 'import {mod}; print({mod}.__version__)'",
    "make -j{n} build",
    "pytest -x tests/{mod} --basetemp=/tmp/pytest-{n}",
    "npm ci",
    "npm run lint",
    "cargo test --release",
    "go test ./...",
    "docker build -t {repo}:{ver} .",
    "./scripts/integration.sh --shard {n}",
)
_ERRORS = (
    'Traceback (most recent call last):\n  File "/tmp/t{n}/x.py", line {n}\n'
    "ModuleNotFoundError: No module named '{mod}'",
    "ERROR: Could not find a version that satisfies the requirement {pkg}=={ver}\n"
    "ERROR: No matching distribution found for {pkg}=={ver}",
    "E   AssertionError: assert {n} == {m}\nFAILED tests/test_{mod}.py::test_{mod} - AssertionError",
    "npm ERR! code ELIFECYCLE\nnpm ERR! errno {n}\nnpm ERR! {pkg}@{ver} lint: `eslint .`",
    "error[E0432]: unresolved import `{mod}`\nerror: could not compile `{pkg}` due to previous error",
    "fatal: unable to access 'https://example.com/{mod}.git/': Connection timed out after {n} ms",
    "make: *** [Makefile:{n}: build] Error {m}\ncc1: fatal error: {mod}.h: No such file or directory",
    "Killed",
)


@dataclass
class _Job:
    repo: str
    name: str
    steps: list[str]
    fail_rates: list[float]
    pin: int = 0
    broken_step: int | None = None
    broken_error: int = 0
    env: dict[str, str] = field(default_factory=dict)


def _fill(template: str, rng: random.Random, repo: str, pin: int) -> str:
    return template.format(
        repo=repo,
        pkg=f"pkg{rng.randrange(30)}",
        ver=f"1.{pin}.0",
        mod=f"mod{rng.randrange(40)}",
        n=rng.randrange(2, 64),
        m=rng.randrange(2, 64),
    )


def _identity(template: str, rng: random.Random, repo: str) -> str:
    """Fix a step's identifying parts (package, module) once per job; keep the noise."""
    return template.format(
        repo=repo, pkg=f"pkg{rng.randrange(30)}", mod=f"mod{rng.randrange(40)}",
        ver="{ver}", n="{n}", m="{m}",
    )  # fmt: skip


def _jobs(rng: random.Random, repos: int, jobs_per_repo: int) -> list[_Job]:
    jobs = []
    for r in range(repos):
        for j in range(jobs_per_repo):
            picks = rng.sample(range(2, len(_STEPS)), rng.randrange(2, 6))
            repo = f"org/repo{r}"
            chosen = [_STEPS[0], _STEPS[1], *(_STEPS[i] for i in picks)]
            steps = [_identity(t, rng, repo) for t in chosen]
            rates = [rng.choice((0.002, 0.01, 0.02, 0.05, 0.15, 0.35)) for _ in steps]
            env = {"CI": "true", "PYTHON": "3.11"}
            jobs.append(_Job(repo, f"job{j}", steps, rates, env=env))
    return jobs


def _maybe_change(job: _Job, rng: random.Random) -> None:
    if job.broken_step is None and rng.random() < 0.03:
        job.broken_step = rng.randrange(1, len(job.steps))
        job.broken_error = rng.randrange(len(_ERRORS))
    elif job.broken_step is not None and rng.random() < 0.25:
        job.broken_step = None
        job.pin += 1
        if rng.random() < 0.3:
            job.env["PYTHON"] = rng.choice(("3.11", "3.12", "3.13"))


def simulate(
    observations: int,
    *,
    seed: int = 0,
    repos: int = 20,
    jobs_per_repo: int = 3,
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC),
) -> Iterator[Observation]:
    """Yield ``observations`` observations in time order (job run by job run)."""
    rng = random.Random(seed)
    jobs = _jobs(rng, repos, jobs_per_repo)
    now, produced, run_no = start, 0, 0
    commits = {job.repo: f"{rng.getrandbits(40):010x}" for job in jobs}
    while produced < observations:
        job = rng.choice(jobs)
        run_no += 1
        if rng.random() < 0.3:
            commits[job.repo] = f"{rng.getrandbits(40):010x}"
        _maybe_change(job, rng)
        prev: str | None = None
        for i, template in enumerate(job.steps):
            cmd = _fill(template, rng, job.repo, job.pin)
            broken = job.broken_step == i
            fails = broken or rng.random() < job.fail_rates[i]
            err = job.broken_error if broken else rng.randrange(len(_ERRORS))
            now += timedelta(seconds=rng.randrange(5, 120))
            yield Observation(
                command=cmd, exit_code=1 if fails else 0,
                duration_s=rng.lognormvariate(1.0 + i * 0.3, 0.4), finished_at=now,
                run_id=f"run{run_no}", job=job.name, step=i, step_name=f"step{i}",
                repo=job.repo, workflow="ci", commit=commits[job.repo], prev_command=prev,
                output=_fill(_ERRORS[err], rng, job.repo, job.pin) if fails else "",
                env=dict(job.env),
            )  # fmt: skip
            produced += 1
            prev = cmd
            if fails or produced >= observations:
                break
