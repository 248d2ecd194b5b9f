"""The learning schema (SQLAlchemy Core), one for SQLite and PostgreSQL.

Raw observations are kept, and next to them aggregate tables maintained on every
write, so that queries are index lookups at millions of rows. The graph lives in
these tables: nodes are normalised commands and signatures; ``learn_edge_stats``
holds the "followed by" edges (success and failure counts per repository, ``'*'``
meaning every repository) and ``learn_cmd_signatures`` the "failed with" edges.

==========================  ===============================================
table                       one row per
==========================  ===============================================
learn_observations          command run (raw and normalised, context, outcome)
learn_job_runs              run of a job (context, env, step and failure counts)
learn_cmd_stats             (repository or ``'*'``, command)
learn_family_stats          command family
learn_edge_stats            (repository or ``'*'``, previous command, command)
learn_commit_stats          (repository, commit, command): flakiness evidence
learn_signatures            clustered failure signature
learn_signature_aliases     exact template seen, pointing to its signature
learn_sig_contexts          (signature, repository, workflow, job)
learn_cmd_signatures        (command, signature)
==========================  ===============================================

Timestamps are seconds since the epoch (float). Every change goes through an
alembic migration in ``migrations/versions`` (version table
``learn_alembic_version``, so it does not clash with other schemas in the database).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

metadata = MetaData()
_ID = BigInteger().with_variant(Integer(), "sqlite")


def _counts() -> list[Column[int]]:
    return [Column("n", Integer, nullable=False), Column("ok", Integer, nullable=False)]


observations = Table(
    "learn_observations",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("run_id", String(128), nullable=False),
    Column("job", String(200), nullable=False),
    Column("step", Integer, nullable=False),
    Column("step_name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("repo", String(200), nullable=False),
    Column("branch", String(200), nullable=False),
    Column("workflow", String(200), nullable=False),
    Column("commit_sha", String(64), nullable=False),
    Column("image", String(200), nullable=False),
    Column("command", Text, nullable=False),
    Column("norm", Text, nullable=False),
    Column("family", String(200), nullable=False),
    Column("prev_norm", Text, nullable=True),
    Column("exit_code", Integer, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("ts", Float, nullable=False),
    Column("signature_id", _ID, nullable=True),
    Index("ix_learn_obs_run", "run_id", "job", "step"),
    Index("ix_learn_obs_norm_ok_ts", "norm", "ok", "ts"),
    Index(
        "ix_learn_obs_sig_ts",
        "signature_id",
        "ts",
        sqlite_where=text("signature_id IS NOT NULL"),
        postgresql_where=text("signature_id IS NOT NULL"),
    ),
)

job_runs = Table(
    "learn_job_runs",
    metadata,
    Column("run_id", String(128), primary_key=True),
    Column("job", String(200), primary_key=True),
    Column("repo", String(200), nullable=False),
    Column("workflow", String(200), nullable=False),
    Column("branch", String(200), nullable=False),
    Column("commit_sha", String(64), nullable=False),
    Column("env", Text, nullable=False),
    Column("started_ts", Float, nullable=False),
    Column("ended_ts", Float, nullable=False),
    Column("n_steps", Integer, nullable=False),
    Column("n_failed", Integer, nullable=False),
    Index("ix_learn_job_runs_job", "repo", "workflow", "job", "started_ts"),
)

cmd_stats = Table(
    "learn_cmd_stats",
    metadata,
    Column("repo", String(200), primary_key=True),
    Column("cmd", Text, primary_key=True),
    *_counts(),
    Column("dur_sum", Float, nullable=False),
    Column("dur_max", Float, nullable=False),
    Column("first_ts", Float, nullable=False),
    Column("last_ts", Float, nullable=False),
)

family_stats = Table(
    "learn_family_stats",
    metadata,
    Column("family", String(200), primary_key=True),
    *_counts(),
)

edge_stats = Table(
    "learn_edge_stats",
    metadata,
    Column("repo", String(200), primary_key=True),
    Column("prev", Text, primary_key=True),
    Column("cmd", Text, primary_key=True),
    *_counts(),
    Index("ix_learn_edge_cmd", "repo", "cmd"),
)

commit_stats = Table(
    "learn_commit_stats",
    metadata,
    Column("repo", String(200), primary_key=True),
    Column("commit_sha", String(64), primary_key=True),
    Column("cmd", Text, primary_key=True),
    *_counts(),
    Index(
        "ix_learn_commit_flaky",
        "cmd",
        sqlite_where=text("ok > 0 AND ok < n"),
        postgresql_where=text("ok > 0 AND ok < n"),
    ),
)

signatures = Table(
    "learn_signatures",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("key", String(40), nullable=False, unique=True),
    Column("bucket", String(200), nullable=False, index=True),
    Column("template", Text, nullable=False),
    Column("example", Text, nullable=False),
    Column("n", Integer, nullable=False),
    Column("first_ts", Float, nullable=False),
    Column("last_ts", Float, nullable=False),
)

signature_aliases = Table(
    "learn_signature_aliases",
    metadata,
    Column("template_key", String(40), primary_key=True),
    Column("signature_id", _ID, nullable=False),
)

sig_contexts = Table(
    "learn_sig_contexts",
    metadata,
    Column("signature_id", _ID, primary_key=True),
    Column("repo", String(200), primary_key=True),
    Column("workflow", String(200), primary_key=True),
    Column("job", String(200), primary_key=True),
    Column("n", Integer, nullable=False),
    Column("first_ts", Float, nullable=False),
    Column("last_ts", Float, nullable=False),
)

cmd_signatures = Table(
    "learn_cmd_signatures",
    metadata,
    Column("cmd", Text, primary_key=True),
    Column("signature_id", _ID, primary_key=True),
    Column("n", Integer, nullable=False),
    Column("last_ts", Float, nullable=False),
    Index("ix_learn_cmd_sig_sig", "signature_id"),
)
