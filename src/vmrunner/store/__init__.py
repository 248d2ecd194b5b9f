"""The store: one database (SQLite by default, PostgreSQL by URL) for runs, their log
index, concurrency groups and learning, under one alembic migration tree.

``engine`` connects and migrates; ``runs`` keeps every run (exec, workflow, systest)
from the moment it is accepted; ``concurrency`` holds GitHub-style concurrency groups
shared by every process (and host) using the database. Importing this package loads
nothing heavy: each module imports SQLAlchemy itself.
"""
