"""The learning store's connection lives in :mod:`vmrunner.store.engine` (one engine and
one migration tree for runs, queue, concurrency groups and learning); re-exported here
for the learning readers and writers."""

from vmrunner.errors import StoreError
from vmrunner.store.engine import VERSION_TABLE, Store, migrate, open_store, resolve_url

__all__ = ["VERSION_TABLE", "Store", "StoreError", "migrate", "open_store", "resolve_url"]
