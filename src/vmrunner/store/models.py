"""The tables of runs, their logs and concurrency groups (SQLAlchemy Core).

Times are Unix seconds (floats). JSON documents are stored as text: the same bytes on
SQLite and PostgreSQL, and the store never queries inside them.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("title", String(500), nullable=False, server_default=""),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Column("host", String(255), nullable=False),
    Column("owner", String(64)),  # "pid:start-ticks:boot-id" of the process running it
    Column("heartbeat_at", Float),
    Column("repo", String(255)),
    Column("branch", String(255)),
    Column("sha", String(64)),
    Column("request", Text, nullable=False),
    Column("document", Text),
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    Column("run_dir", Text),
    Index("ix_runs_status", "status"),
    Index("ix_runs_kind_created", "kind", "created_at"),
)

run_logs = Table(
    "run_logs",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("path", Text, nullable=False),
)

concurrency_groups = Table(
    "concurrency_groups",
    metadata,
    Column("name", String(500), primary_key=True),  # folded (case-insensitive) name
    Column("running", String(255), nullable=False),
    Column("pending", String(255)),
    Column("cancelling", Boolean, nullable=False, server_default=false()),
)

concurrency_holders = Table(
    "concurrency_holders",
    metadata,
    Column("holder", String(255), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("owner", String(64), nullable=False),
    Column("cancelled", Boolean, nullable=False, server_default=false()),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(64), primary_key=True),  # X-GitHub-Delivery
    Column("event", String(64), nullable=False),
    Column("action", String(64)),
    Column("repo", String(255)),
    Column("received_at", Float, nullable=False),
    Column("copies", Integer, nullable=False, server_default="1"),
    Column("status", String(16), nullable=False),  # received, ignored, processed, error
    Column("note", Text, nullable=False, server_default=""),
    Column("payload", Text, nullable=False),
    Index("ix_deliveries_status", "status", "received_at"),
)
