"""The initial learning schema.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_FLAKY = "ok > 0 AND ok < n"
_FAILED = "signature_id IS NOT NULL"


def _counts() -> list[sa.Column[int]]:
    return [sa.Column("n", sa.Integer, nullable=False), sa.Column("ok", sa.Integer, nullable=False)]


def _str(name: str, length: int = 200, *, primary_key: bool = False) -> sa.Column[str]:
    return sa.Column(name, sa.String(length), nullable=False, primary_key=primary_key)


def _observations() -> None:
    op.create_table(
        "learn_observations",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        _str("run_id", 128),
        _str("job"),
        sa.Column("step", sa.Integer, nullable=False),
        _str("step_name"),
        _str("kind", 16),
        _str("repo"),
        _str("branch"),
        _str("workflow"),
        _str("commit_sha", 64),
        _str("image"),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("norm", sa.Text, nullable=False),
        _str("family"),
        sa.Column("prev_norm", sa.Text, nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=False),
        sa.Column("ok", sa.Boolean, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("signature_id", _ID, nullable=True),
    )
    op.create_index("ix_learn_obs_run", "learn_observations", ["run_id", "job", "step"])
    op.create_index("ix_learn_obs_norm_ok_ts", "learn_observations", ["norm", "ok", "ts"])
    op.create_index(
        "ix_learn_obs_sig_ts",
        "learn_observations",
        ["signature_id", "ts"],
        sqlite_where=sa.text(_FAILED),
        postgresql_where=sa.text(_FAILED),
    )


def _job_runs() -> None:
    op.create_table(
        "learn_job_runs",
        _str("run_id", 128, primary_key=True),
        _str("job", primary_key=True),
        _str("repo"),
        _str("workflow"),
        _str("branch"),
        _str("commit_sha", 64),
        sa.Column("env", sa.Text, nullable=False),
        sa.Column("started_ts", sa.Float, nullable=False),
        sa.Column("ended_ts", sa.Float, nullable=False),
        sa.Column("n_steps", sa.Integer, nullable=False),
        sa.Column("n_failed", sa.Integer, nullable=False),
    )
    op.create_index(
        "ix_learn_job_runs_job", "learn_job_runs", ["repo", "workflow", "job", "started_ts"]
    )


def _stats() -> None:
    op.create_table(
        "learn_cmd_stats",
        _str("repo", primary_key=True),
        sa.Column("cmd", sa.Text, primary_key=True),
        *_counts(),
        sa.Column("dur_sum", sa.Float, nullable=False),
        sa.Column("dur_max", sa.Float, nullable=False),
        sa.Column("first_ts", sa.Float, nullable=False),
        sa.Column("last_ts", sa.Float, nullable=False),
    )
    op.create_table("learn_family_stats", _str("family", primary_key=True), *_counts())
    op.create_table(
        "learn_edge_stats",
        _str("repo", primary_key=True),
        sa.Column("prev", sa.Text, primary_key=True),
        sa.Column("cmd", sa.Text, primary_key=True),
        *_counts(),
    )
    op.create_index("ix_learn_edge_cmd", "learn_edge_stats", ["repo", "cmd"])
    op.create_table(
        "learn_commit_stats",
        _str("repo", primary_key=True),
        _str("commit_sha", 64, primary_key=True),
        sa.Column("cmd", sa.Text, primary_key=True),
        *_counts(),
    )
    op.create_index(
        "ix_learn_commit_flaky",
        "learn_commit_stats",
        ["cmd"],
        sqlite_where=sa.text(_FLAKY),
        postgresql_where=sa.text(_FLAKY),
    )


def _signatures() -> None:
    op.create_table(
        "learn_signatures",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(40), nullable=False, unique=True),
        _str("bucket"),
        sa.Column("template", sa.Text, nullable=False),
        sa.Column("example", sa.Text, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("first_ts", sa.Float, nullable=False),
        sa.Column("last_ts", sa.Float, nullable=False),
    )
    op.create_index("ix_learn_signatures_bucket", "learn_signatures", ["bucket"])
    op.create_table(
        "learn_signature_aliases",
        _str("template_key", 40, primary_key=True),
        sa.Column("signature_id", _ID, nullable=False),
    )
    op.create_table(
        "learn_sig_contexts",
        sa.Column("signature_id", _ID, primary_key=True),
        _str("repo", primary_key=True),
        _str("workflow", primary_key=True),
        _str("job", primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("first_ts", sa.Float, nullable=False),
        sa.Column("last_ts", sa.Float, nullable=False),
    )
    op.create_table(
        "learn_cmd_signatures",
        sa.Column("cmd", sa.Text, primary_key=True),
        sa.Column("signature_id", _ID, primary_key=True),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("last_ts", sa.Float, nullable=False),
    )
    op.create_index("ix_learn_cmd_sig_sig", "learn_cmd_signatures", ["signature_id"])


def upgrade() -> None:
    _observations()
    _job_runs()
    _stats()
    _signatures()


def downgrade() -> None:
    for table in (
        "learn_cmd_signatures",
        "learn_sig_contexts",
        "learn_signature_aliases",
        "learn_signatures",
        "learn_commit_stats",
        "learn_edge_stats",
        "learn_family_stats",
        "learn_cmd_stats",
        "learn_job_runs",
        "learn_observations",
    ):
        op.drop_table(table)
