"""Alembic environment for the one store schema (runs, concurrency groups, learning).

Run programmatically by ``vmrunner.store.engine`` with an open connection in
``config.attributes["connection"]`` (the caller holds the transaction and any lock);
with no connection it connects to ``sqlalchemy.url`` itself (for ``alembic`` on the
command line during development).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from vmrunner.learning.models import metadata as learning_metadata
from vmrunner.store.models import metadata as runs_metadata

VERSION_TABLE = "learn_alembic_version"
config = context.config


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=[learning_metadata, runs_metadata],
        version_table=VERSION_TABLE,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run(conn)


run()
