"""Preparing rows and folding a batch into aggregate deltas."""

from __future__ import annotations

import json

from vmrunner.learning.batch import aggregate, job_run_rows, prepare, redact_env

from .builders import obs


def test_prepare_normalises_and_signs_failures_only() -> None:
    ok = prepare(obs("pip install foo==1.2", repo="r", prev_command="git clone x"))
    bad = prepare(obs("pytest", exit_code=1, output="E   AssertionError: assert 1 == 2"))
    assert ok.row["norm"] == "pip install foo==*"
    assert ok.row["prev_norm"] == "git clone x"
    assert ok.signature is None
    assert bad.signature is not None
    assert bad.signature.template == "E AssertionError: assert <num> == <num>"


def test_secrets_are_hashed_not_stored() -> None:
    env = redact_env({"GITHUB_TOKEN": "s3cr3t", "PY": "3.11", "DB_PASSWORD": "pw"})
    assert env["PY"] == "3.11"
    assert env["GITHUB_TOKEN"].startswith("sha256:")
    assert "s3cr3t" not in json.dumps(env)
    assert env["GITHUB_TOKEN"] != redact_env({"GITHUB_TOKEN": "other"})["GITHUB_TOKEN"]


def test_aggregate_counts_per_repo_and_everywhere() -> None:
    rows = [
        prepare(obs("make", repo="a", commit="c1", minute=1)).row,
        prepare(obs("make", repo="a", commit="c1", exit_code=2, minute=2, duration_s=3.0)).row,
        prepare(obs("make", repo="b", commit="c9", prev_command="cmake .", minute=3)).row,
    ]
    d = aggregate(rows)
    cmd = {
        (r["repo"], r["cmd"]): (r["n"], r["ok"], r["dur_sum"], r["dur_max"]) for r in d.cmd_stats
    }
    assert cmd == {("*", "make"): (3, 2, 5.0, 3.0), ("a", "make"): (2, 1, 4.0, 3.0),
                   ("b", "make"): (1, 1, 1.0, 1.0)}  # fmt: skip
    assert [(r["repo"], r["prev"], r["n"]) for r in d.edge_stats] == [("*", "cmake .", 1),
                                                                        ("b", "cmake .", 1)]  # fmt: skip
    assert [(r["commit_sha"], r["n"], r["ok"]) for r in d.commit_stats] == [
        ("c1", 2, 1),
        ("c9", 1, 1),
    ]
    assert d.family_stats == [{"family": "make", "n": 3, "ok": 2}]


def test_job_runs_fold_steps() -> None:
    prepared = [
        prepare(obs("a", run_id="r1", job="j", step=0, minute=1, env={"X": "1"})),
        prepare(obs("b", run_id="r1", job="j", step=1, minute=2, exit_code=1)),
        prepare(obs("a", run_id="r2", job="j", step=0, minute=3)),
    ]
    rows = job_run_rows(prepared)
    assert [(r["run_id"], r["n_steps"], r["n_failed"], r["env"]) for r in rows] == [
        ("r1", 2, 1, '{"X": "1"}'),
        ("r2", 1, 0, "{}"),
    ]
