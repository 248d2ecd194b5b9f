"""Webhook deliveries, kept before they are acknowledged.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64)),
        sa.Column("repo", sa.String(255)),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("copies", sa.Integer, nullable=False, server_default="1"),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("payload", sa.Text, nullable=False),
    )
    op.create_index("ix_deliveries_status", "deliveries", ["status", "received_at"])


def downgrade() -> None:
    op.drop_table("deliveries")
