"""Turning observations into rows and aggregate deltas (pure, no database).

``prepare`` does the CPU work outside any transaction: normalisation, the failure
signature, secret redaction. ``aggregate`` folds a batch of prepared rows into one
delta per aggregate-table key, so that a batch of 10,000 observations becomes a few
hundred upserts. Keys come out sorted: writers then lock rows in one order.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from vmrunner.learning.normalise import family, normalise
from vmrunner.learning.results import Observation
from vmrunner.learning.signature import Signature, signature

# The repository key of the aggregates over every repository.
ALL_REPOS = "*"
MAX_COMMAND_CHARS = 8000
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|PASSPHRASE|CREDENTIAL|API_?KEY|PRIVATE|AUTH", re.I)


@dataclass(frozen=True)
class Prepared:
    """An observation ready to store: its row (no signature id yet), env and signature."""

    row: dict[str, Any]
    env: Mapping[str, str]
    signature: Signature | None


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with the values of secret-looking names replaced by a short hash.

    The hash keeps "the value changed" visible to fix extraction without storing it.
    """
    out: dict[str, str] = {}
    for key, value in env.items():
        if _SECRET_NAME.search(key):
            out[key] = "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:12]
        else:
            out[key] = value
    return out


def _timestamp(when: datetime) -> float:
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp()


def prepare(obs: Observation) -> Prepared:
    """The row for ``obs``; computes the signature when it failed. Never touches a database.

    A naive ``finished_at`` is taken as UTC. Context strings are cut to their column sizes (200 characters; run id 128,
    commit 64, kind 16) and the raw command to ``MAX_COMMAND_CHARS``.
    """
    ok = obs.exit_code == 0
    row: dict[str, Any] = {
        "run_id": obs.run_id[:128],
        "job": obs.job[:200],
        "step": obs.step,
        "step_name": obs.step_name[:200],
        "kind": obs.kind[:16],
        "repo": obs.repo[:200],
        "branch": obs.branch[:200],
        "workflow": obs.workflow[:200],
        "commit_sha": obs.commit[:64],
        "image": obs.image[:200],
        "command": obs.command[:MAX_COMMAND_CHARS],
        "norm": normalise(obs.command),
        "family": family(obs.command)[:200],
        "prev_norm": normalise(obs.prev_command) if obs.prev_command else None,
        "exit_code": obs.exit_code,
        "ok": ok,
        "duration_s": max(float(obs.duration_s), 0.0),
        "ts": _timestamp(obs.finished_at),
        "signature_id": None,
    }
    sig = None if ok else signature(obs.output, obs.exit_code)
    return Prepared(row=row, env=obs.env, signature=sig)


@dataclass(frozen=True)
class Deltas:
    """One upsert row per aggregate key, sorted by key."""

    cmd_stats: list[dict[str, Any]]
    family_stats: list[dict[str, Any]]
    edge_stats: list[dict[str, Any]]
    commit_stats: list[dict[str, Any]]


def _count(acc: dict[Any, list[int]], key: Any, ok: int) -> None:
    cur = acc.get(key)
    if cur is None:
        acc[key] = [1, ok]
    else:
        cur[0] += 1
        cur[1] += ok


def _timed(acc: dict[Any, list[Any]], key: Any, ok: int, dur: float, ts: float) -> None:
    cur = acc.get(key)
    if cur is None:
        acc[key] = [1, ok, dur, dur, ts, ts]
        return
    cur[0] += 1
    cur[1] += ok
    cur[2] += dur
    cur[3] = max(cur[3], dur)
    cur[4] = min(cur[4], ts)
    cur[5] = max(cur[5], ts)


def _rows(
    acc: dict[Any, list[Any]], keys: Sequence[str], values: Sequence[str]
) -> list[dict[str, Any]]:
    names = (*keys, *values)
    if len(keys) == 1:
        return [dict(zip(names, (key, *acc[key]), strict=True)) for key in sorted(acc)]
    return [dict(zip(names, (*key, *acc[key]), strict=True)) for key in sorted(acc)]


def aggregate(rows: Iterable[Mapping[str, Any]]) -> Deltas:
    """Fold observation rows into count deltas for the command, family, edge and commit tables.

    Each command counts under its repository and under ``'*'`` (everywhere); an
    edge is recorded only when the observation has a previous command.
    """
    cmd: dict[Any, list[Any]] = {}
    fam: dict[Any, list[int]] = {}
    edge: dict[Any, list[int]] = {}
    commit: dict[Any, list[int]] = {}
    for r in rows:
        ok, norm, repo, prev = int(r["ok"]), r["norm"], r["repo"], r["prev_norm"]
        dur, ts = r["duration_s"], r["ts"]
        _timed(cmd, (repo, norm), ok, dur, ts)
        _timed(cmd, (ALL_REPOS, norm), ok, dur, ts)
        if prev is not None:
            _count(edge, (repo, prev, norm), ok)
            _count(edge, (ALL_REPOS, prev, norm), ok)
        _count(fam, r["family"], ok)
        if r["commit_sha"]:
            _count(commit, (repo, r["commit_sha"], norm), ok)
    timed = ("n", "ok", "dur_sum", "dur_max", "first_ts", "last_ts")
    return Deltas(
        cmd_stats=_rows(cmd, ("repo", "cmd"), timed),
        family_stats=_rows(fam, ("family",), ("n", "ok")),
        edge_stats=_rows(edge, ("repo", "prev", "cmd"), ("n", "ok")),
        commit_stats=_rows(commit, ("repo", "commit_sha", "cmd"), ("n", "ok")),
    )


def _env_json(env: Mapping[str, str]) -> str:
    return json.dumps(redact_env(env), sort_keys=True) if env else "{}"


def job_run_rows(prepared: Sequence[Prepared]) -> list[dict[str, Any]]:
    """One upsert row per (run, job) in the batch, sorted: step counts, time span, env."""
    acc: dict[tuple[str, str], dict[str, Any]] = {}
    for p in prepared:
        r = p.row
        key = (r["run_id"], r["job"])
        start = r["ts"] - r["duration_s"]
        cur = acc.get(key)
        if cur is None:
            acc[key] = {
                "run_id": r["run_id"],
                "job": r["job"],
                "repo": r["repo"],
                "workflow": r["workflow"],
                "branch": r["branch"],
                "commit_sha": r["commit_sha"],
                "env": _env_json(p.env),
                "started_ts": start,
                "ended_ts": r["ts"],
                "n_steps": 1,
                "n_failed": 0 if r["ok"] else 1,
            }
            continue
        cur["n_steps"] += 1
        cur["n_failed"] += 0 if r["ok"] else 1
        cur["started_ts"] = min(cur["started_ts"], start)
        cur["ended_ts"] = max(cur["ended_ts"], r["ts"])
        if cur["env"] == "{}" and p.env:
            cur["env"] = _env_json(p.env)
    return [acc[k] for k in sorted(acc)]
