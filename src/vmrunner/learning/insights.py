"""Lessons and run explanations, read from the store and shaped by the pure rules.

A lesson is a signature seen at least ``min_occurrences`` times. Its candidate fix
comes from the most recent fail-to-pass transition of a job where it occurred:
among the last ``FIX_SEARCH_RUNS`` runs of each of its ``FIX_SEARCH_CONTEXTS`` most
recent jobs, the newest run failing with the signature that a passing run followed,
diffed against that first passing run (``lessons.extract_fix``). Transitions with
no visible difference are skipped. Reads only; no clock.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, Row, false, func, select

from vmrunner.learning import models
from vmrunner.learning.flaky import is_flaky
from vmrunner.learning.lessons import CandidateFix, JobRunSnapshot, StepRecord, extract_fix
from vmrunner.learning.reader import short_id
from vmrunner.learning.results import (
    ContextCount,
    Lesson,
    RunExplanation,
    StepExplanation,
    ts_to_datetime,
)

FIX_SEARCH_RUNS = 50
FIX_SEARCH_CONTEXTS = 3


def _snapshot(conn: Connection, run: Row[Any]) -> JobRunSnapshot:
    o = models.observations
    rows = conn.execute(
        select(o.c.step, o.c.step_name, o.c.command, o.c.ok)
        .where(o.c.run_id == run.run_id, o.c.job == run.job)
        .order_by(o.c.step, o.c.id)
    )
    steps = tuple(StepRecord(int(r[0]), r[1], r[2], bool(r[3])) for r in rows)
    env = json.loads(run.env) if run.env else {}
    return JobRunSnapshot(run.run_id, run.job, run.commit_sha, steps, env)


def _fix_in_context(conn: Connection, sig_id: int, ctx: Row[Any]) -> CandidateFix | None:
    j, o = models.job_runs, models.observations
    runs = conn.execute(
        select(j)
        .where(j.c.repo == ctx.repo, j.c.workflow == ctx.workflow, j.c.job == ctx.job)
        .order_by(j.c.started_ts.desc())
        .limit(FIX_SEARCH_RUNS)
    ).all()[::-1]
    failing = sorted({(r.run_id, r.job) for r in runs if r.n_failed})
    if not failing:
        return None
    # Filter on the signature in Python: by run id the lookup stays on the run index,
    # whereas a signature condition may lead the planner to scan all its occurrences.
    failing_ids = sorted({run_id for run_id, _ in failing})
    rows = conn.execute(
        select(o.c.run_id, o.c.job, o.c.signature_id).where(
            o.c.run_id.in_(failing_ids), o.c.ok == false()
        )
    )
    with_sig = {(r[0], r[1]) for r in rows if r[2] == sig_id}
    for i in range(len(runs) - 1, -1, -1):
        if (runs[i].run_id, runs[i].job) not in with_sig:
            continue
        passing = next((r for r in runs[i + 1 :] if r.n_failed == 0), None)
        if passing is None:
            continue
        fix = extract_fix(_snapshot(conn, runs[i]), _snapshot(conn, passing))
        if fix is not None:
            return fix
    return None


def lesson_for(conn: Connection, sig: Row[Any]) -> Lesson:
    """The lesson of signature row ``sig`` (whatever its count: callers apply the threshold)."""
    sc, cs = models.sig_contexts, models.cmd_signatures
    contexts = conn.execute(
        select(sc).where(sc.c.signature_id == sig.id).order_by(sc.c.last_ts.desc(), sc.c.repo)
    ).all()
    commands = conn.execute(
        select(cs.c.cmd).where(cs.c.signature_id == sig.id).order_by(cs.c.n.desc()).limit(5)
    ).scalars()
    fix = None
    for ctx in contexts[:FIX_SEARCH_CONTEXTS]:
        fix = _fix_in_context(conn, int(sig.id), ctx)
        if fix is not None:
            break
    return Lesson(
        signature_id=short_id(sig.key),
        template=sig.template,
        example=sig.example,
        occurrences=int(sig.n),
        jobs=tuple(sorted({f"{c.repo}/{c.workflow}/{c.job}" for c in contexts})),
        repositories=tuple(sorted({c.repo for c in contexts})),
        commands=tuple(commands),
        first_seen=ts_to_datetime(sig.first_ts),
        last_seen=ts_to_datetime(sig.last_ts),
        fix=fix,
    )


def lessons(conn: Connection, min_occurrences: int, limit: int) -> tuple[Lesson, ...]:
    """Lessons for every signature seen at least ``min_occurrences`` times, most frequent first."""
    s = models.signatures
    rows = conn.execute(
        select(s).where(s.c.n >= min_occurrences).order_by(s.c.n.desc(), s.c.id).limit(limit)
    ).all()
    return tuple(lesson_for(conn, r) for r in rows)


def _step(conn: Connection, obs: Row[Any], min_occurrences: int) -> StepExplanation:
    s, sc, o, c = models.signatures, models.sig_contexts, models.observations, models.commit_stats
    sig = conn.execute(select(s).where(s.c.id == obs.signature_id)).one()
    before = conn.execute(
        select(func.count()).select_from(o).where(o.c.signature_id == sig.id, o.c.ts < obs.ts)
    ).scalar_one()
    contexts = conn.execute(
        select(sc)
        .where(sc.c.signature_id == sig.id)
        .order_by(sc.c.n.desc(), sc.c.repo, sc.c.workflow, sc.c.job)
        .limit(10)
    )
    seen_in = tuple(
        ContextCount(
            f"{r.repo}/{r.workflow}/{r.job}",
            int(r.n),
            ts_to_datetime(r.first_ts),
            ts_to_datetime(r.last_ts),
        )
        for r in contexts
    )
    commit = conn.execute(
        select(c.c.n, c.c.ok).where(
            c.c.repo == obs.repo, c.c.commit_sha == obs.commit_sha, c.c.cmd == obs.norm
        )
    ).first()
    n, ok = (int(commit[0]), int(commit[1])) if commit else (0, 0)
    return StepExplanation(
        job=obs.job,
        step=int(obs.step),
        step_name=obs.step_name,
        command=obs.command,
        normalised=obs.norm,
        exit_code=int(obs.exit_code),
        signature_id=short_id(sig.key),
        template=sig.template,
        occurrences=int(sig.n),
        occurrences_before=int(before),
        seen_in=seen_in,
        lesson=lesson_for(conn, sig) if sig.n >= min_occurrences else None,
        flaky=bool(obs.commit_sha) and is_flaky(n, ok),
        passes_on_commit=ok,
        failures_on_commit=n - ok,
    )


def explain(conn: Connection, run_id: str, min_occurrences: int) -> RunExplanation:
    """The explanation of each failed step of ``run_id`` (``found`` is false if unknown)."""
    o = models.observations
    failed = conn.execute(
        select(o).where(o.c.run_id == run_id, o.c.ok == false()).order_by(o.c.job, o.c.step)
    ).all()
    if not failed:
        found = conn.execute(select(o.c.id).where(o.c.run_id == run_id).limit(1)).first()
        return RunExplanation(run_id=run_id, found=found is not None, failed_steps=())
    steps = tuple(_step(conn, r, min_occurrences) for r in failed if r.signature_id is not None)
    return RunExplanation(run_id=run_id, found=True, failed_steps=steps)
