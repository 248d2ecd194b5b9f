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
    text,
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
    # GET /api/v1/runs: a filter, newest first (0005)
    Index("ix_runs_kind_id", "kind", "id"),
    Index("ix_runs_status_id", "status", "id"),
    Index("ix_runs_repo_id", "repo", "id"),
    Index("ix_runs_branch_id", "branch", "id"),
    Index("ix_runs_host_id", "host", "id"),
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

queue = Table(
    "queue",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("delivery_id", String(64)),
    Column("repo", String(255), nullable=False),  # owner/name
    Column("sha", String(64), nullable=False),
    Column("ref", String(255), nullable=False, server_default=""),
    Column("branch", String(255)),
    Column("workflow", String(500), nullable=False),  # path in the repository
    Column("workflow_name", String(255), nullable=False, server_default=""),
    Column("event", String(64), nullable=False),
    Column("payload", Text, nullable=False),  # the event's JSON payload
    Column("group_name", String(500), nullable=False),  # folded concurrency group
    Column("cancel_in_progress", Boolean, nullable=False, server_default=false()),
    Column("state", String(16), nullable=False),  # pending, claimed, done, cancelled, lost
    Column("fence", Integer, nullable=False, server_default="0"),  # bumped by every claim
    Column("lease_owner", String(255)),  # the worker id holding the claim
    Column("lease_until", Float),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("note", Text, nullable=False, server_default=""),
    Column("created_at", Float, nullable=False),
    Column("claimed_at", Float),
    Column("finished_at", Float),
    Index("ix_queue_state", "state", "id"),
    Index("ix_queue_group", "group_name", "state"),
    Index(
        "uq_queue_claimed_group",
        "group_name",
        unique=True,
        sqlite_where=text("state = 'claimed'"),
        postgresql_where=text("state = 'claimed'"),
    ),  # fmt: skip
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(255), primary_key=True),  # host:pid:start-ticks
    Column("host", String(255), nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("running", Integer, nullable=False, server_default="0"),
    Column("draining", Boolean, nullable=False, server_default=false()),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # status, check_run
    Column("repo", String(255), nullable=False),
    Column("sha", String(64), nullable=False),
    Column("key", String(500), nullable=False),  # reports with one key are sent in id order
    Column("body", Text, nullable=False),  # JSON
    Column("state", String(16), nullable=False, server_default="pending"),  # pending, sent, dead
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_at", Float, nullable=False),
    Column("last_error", Text, nullable=False, server_default=""),
    Column("result", Text),  # JSON of what GitHub answered that later reports need (ids)
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    Index("ix_outbox_state", "state", "next_at"),
    Index("ix_outbox_key", "key", "id"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("scope", String(16), nullable=False),  # read, write
    Column("hash", String(64), nullable=False, unique=True),  # sha256 hex of the secret
    Column("created_at", Float, nullable=False),
    Column("last_used_at", Float),
    Column("revoked", Boolean, nullable=False, server_default=false()),
)
