"""Alembic migrations of the learning schema, applied by ``store.open_store``."""
