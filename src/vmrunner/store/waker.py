"""Waking idle workers when the queue has new work (re-exported by :mod:`.queue`).

On PostgreSQL a :class:`Waker` keeps its own psycopg (v3) connection, made from the
store's URL, that ``LISTEN``s on :data:`CHANNEL`; the queue ``NOTIFY``s it when work is
enqueued, requeued or a busy group frees up. On SQLite (one host) it only sleeps: the
caller polls.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

import psycopg

from vmrunner.store.engine import Store

log = logging.getLogger(__name__)
CHANNEL = "vmrunner_queue"
_CONNECT_TIMEOUT_S = 5


def _conninfo(store: Store) -> str:
    """The store's URL as a libpq URI (without SQLAlchemy's driver name)."""
    return store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class Waker:
    """Waits for queue notifications (see the module's docstring). ``wait`` is meant for
    one thread at a time; ``close`` may be called from any thread."""

    def __init__(self, store: Store, poll_s: float = 1.0) -> None:
        self.poll_s = poll_s
        self._url = _conninfo(store) if store.dialect == "postgresql" else None
        self._conn: psycopg.Connection[Any] | None = None
        self._closed = False
        self._busy = threading.Lock()
        if self._url is not None:
            self._connect()  # listen from now on, so nothing enqueued after this is missed

    def _connect(self) -> bool:
        assert self._url is not None
        try:
            conn: psycopg.Connection[Any] = psycopg.connect(
                self._url, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S
            )
            conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            log.warning("cannot listen for queue notifications: %s", exc)
            return False
        self._conn = conn
        return True

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a notification: True when one arrived (or
        when the connection was just re-made, as notifications may have been missed while
        it was down), False on timeout. SQLite, or PostgreSQL unreachable: sleeps
        ``min(timeout, poll_s)`` and returns False. Never raises for a lost connection;
        the next call reconnects."""
        with self._busy:
            try:
                return self._wait(timeout)
            finally:
                if self._closed:
                    self._drop()

    def _wait(self, timeout: float) -> bool:
        if self._url is None or self._closed:
            time.sleep(max(0.0, min(timeout, self.poll_s)))
            return False
        if self._conn is None:
            if self._connect():
                return True
            time.sleep(max(0.0, min(timeout, self.poll_s)))
            return False
        try:
            got = False
            for _ in self._conn.notifies(timeout=max(0.0, timeout), stop_after=1):
                got = True
            if got:  # take what else is queued: one wake-up per burst
                for _ in self._conn.notifies(timeout=0):
                    pass
            return got
        except psycopg.Error as exc:
            log.warning("queue notification connection lost: %s", exc)
            self._drop()
            return False

    def close(self) -> None:
        """Stop listening (idempotent). A ``wait`` in progress ends by its timeout and
        closes the connection then."""
        self._closed = True
        if self._busy.acquire(blocking=False):
            try:
                self._drop()
            finally:
                self._busy.release()
