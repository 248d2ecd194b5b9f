"""Runs, their log index and concurrency groups, beside the learning schema.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("title", sa.String(500), nullable=False, server_default=""),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("owner", sa.String(64)),
        sa.Column("heartbeat_at", sa.Float),
        sa.Column("repo", sa.String(255)),
        sa.Column("branch", sa.String(255)),
        sa.Column("sha", sa.String(64)),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("document", sa.Text),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("run_dir", sa.Text),
    )
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_kind_created", "runs", ["kind", "created_at"])
    op.create_table(
        "run_logs",
        sa.Column(
            "run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("path", sa.Text, nullable=False),
    )
    op.create_table(
        "concurrency_groups",
        sa.Column("name", sa.String(500), primary_key=True),
        sa.Column("running", sa.String(255), nullable=False),
        sa.Column("pending", sa.String(255)),
        sa.Column("cancelling", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "concurrency_holders",
        sa.Column("holder", sa.String(255), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("cancelled", sa.Boolean, nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    for table in ("concurrency_holders", "concurrency_groups", "run_logs", "runs"):
        op.drop_table(table)
