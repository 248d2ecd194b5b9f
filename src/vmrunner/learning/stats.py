"""``learn stats``: totals, success rates, top failures, flaky and slow commands.

Reads the aggregate tables (and, for a slow command's trend, its last
``TREND_RUNS`` successful durations). Repository success rates count steps; job
success rates count job runs (a job run passes when none of its steps failed).
Read-only; no clock.
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import Connection, case, func, select, true

from vmrunner.learning import models
from vmrunner.learning.batch import ALL_REPOS
from vmrunner.learning.flaky import FlakySummary, summarise_flaky, trend
from vmrunner.learning.reader import short_id, totals
from vmrunner.learning.results import (
    CommandCount,
    LearningStats,
    RateRow,
    SignatureRef,
    SlowCommand,
    Totals,
)

TREND_RUNS = 100
MIN_RUNS_FOR_SLOWEST = 3


def _rate(name: str, n: int, ok: int) -> RateRow:
    return RateRow(name=name, runs=n, successes=ok, success_rate=ok / n if n else 0.0)


def _totals(conn: Connection) -> Totals:
    n, ok = totals(conn)
    j, c, s = models.job_runs, models.cmd_stats, models.signatures
    runs = conn.execute(select(func.count(func.distinct(j.c.run_id)))).scalar_one()
    job_runs = conn.execute(select(func.count()).select_from(j)).scalar_one()
    commands = conn.execute(
        select(func.count()).select_from(c).where(c.c.repo == ALL_REPOS)
    ).scalar_one()
    sigs = conn.execute(select(func.count()).select_from(s)).scalar_one()
    return Totals(n, ok, ok / n if n else 0.0, int(runs), int(job_runs), int(commands), int(sigs))


def _repositories(conn: Connection, top: int) -> tuple[RateRow, ...]:
    c = models.cmd_stats
    n = func.sum(c.c.n)
    rows = conn.execute(
        select(c.c.repo, n, func.sum(c.c.ok))
        .where(c.c.repo != ALL_REPOS)
        .group_by(c.c.repo)
        .order_by(n.desc(), c.c.repo)
        .limit(top)
    )
    return tuple(_rate(r[0], int(r[1]), int(r[2])) for r in rows)


def _jobs(conn: Connection, top: int) -> tuple[RateRow, ...]:
    j = models.job_runs
    n = func.count()
    passed = func.sum(case((j.c.n_failed == 0, 1), else_=0))
    rows = conn.execute(
        select(j.c.repo, j.c.workflow, j.c.job, n, passed)
        .group_by(j.c.repo, j.c.workflow, j.c.job)
        .order_by(n.desc(), j.c.repo, j.c.workflow, j.c.job)
        .limit(top)
    )
    return tuple(_rate(f"{r[0]}/{r[1]}/{r[2]}", int(r[3]), int(r[4])) for r in rows)


def _failing(conn: Connection, top: int) -> tuple[CommandCount, ...]:
    c = models.cmd_stats
    fails = c.c.n - c.c.ok
    rows = conn.execute(
        select(c.c.cmd, c.c.n, fails)
        .where(c.c.repo == ALL_REPOS, fails > 0)
        .order_by(fails.desc(), c.c.cmd)
        .limit(top)
    )
    return tuple(CommandCount(r[0], int(r[1]), int(r[2]), int(r[2]) / int(r[1])) for r in rows)


def _signatures(conn: Connection, top: int) -> tuple[SignatureRef, ...]:
    s = models.signatures
    rows = conn.execute(
        select(s.c.key, s.c.template, s.c.n).order_by(s.c.n.desc(), s.c.id).limit(top)
    )
    return tuple(SignatureRef(short_id(r[0]), r[1], int(r[2])) for r in rows)


def _flaky(conn: Connection, top: int) -> tuple[FlakySummary, ...]:
    c = models.commit_stats
    per_cmd: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for cmd, n, ok in conn.execute(
        select(c.c.cmd, c.c.n, c.c.ok).where(c.c.ok > 0, c.c.ok < c.c.n)
    ):
        per_cmd[cmd].append((int(n), int(ok)))
    summaries = [s for cmd, rows in per_cmd.items() if (s := summarise_flaky(cmd, rows))]
    summaries.sort(key=lambda s: (-s.flaky_commits, -s.flip_rate, s.command))
    return tuple(summaries[:top])


def _slowest(conn: Connection, top: int) -> tuple[SlowCommand, ...]:
    c, o = models.cmd_stats, models.observations
    mean = c.c.dur_sum / c.c.n
    rows = conn.execute(
        select(c.c.cmd, c.c.n, mean, c.c.dur_max)
        .where(c.c.repo == ALL_REPOS, c.c.n >= MIN_RUNS_FOR_SLOWEST)
        .order_by(mean.desc(), c.c.cmd)
        .limit(top)
    ).all()
    out = []
    for cmd, n, mean_s, max_s in rows:
        durations = conn.execute(
            select(o.c.duration_s)
            .where(o.c.norm == cmd, o.c.ok == true())
            .order_by(o.c.ts.desc())
            .limit(TREND_RUNS)
        ).scalars()
        out.append(
            SlowCommand(cmd, int(n), float(mean_s), float(max_s), trend(list(durations)[::-1]))
        )
    return tuple(out)


def stats(conn: Connection, top: int) -> LearningStats:
    """Everything ``learn stats`` shows, with ``top`` rows per list."""
    return LearningStats(
        totals=_totals(conn),
        repositories=_repositories(conn, top),
        jobs=_jobs(conn, top),
        failing_commands=_failing(conn, top),
        signatures=_signatures(conn, top),
        flaky_commands=_flaky(conn, top),
        slowest_commands=_slowest(conn, top),
    )
