"""The HTTP API's bearer tokens (only a hash of each is kept), and indexes for listing
runs by one filter, newest first.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

RUN_FILTERS = ("kind", "status", "repo", "branch", "host")


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_used_at", sa.Float),
        sa.Column("revoked", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    for column in RUN_FILTERS:
        op.create_index(f"ix_runs_{column}_id", "runs", [column, "id"])


def downgrade() -> None:
    for column in RUN_FILTERS:
        op.drop_index(f"ix_runs_{column}_id", "runs")
    op.drop_table("api_tokens")
