"""A cancellation token for blocking work that runs in a worker thread (an image build).

``asyncio`` cannot cancel a thread: cancelling the task that awaits
``asyncio.to_thread`` leaves the thread running to the end. The awaiting side
instead sets a ``CancelToken``; the thread's blocking calls (``run_tool`` polls it
while its tool runs, lock waits) see it and raise ``BuildCancelledError`` at once,
after killing what they started, so the thread unwinds through its own cleanup.
"""

from __future__ import annotations

import threading

from vmrunner.errors import BuildCancelledError


class CancelToken:
    """Set once, from any thread; never cleared."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self, what: str) -> None:
        """Raise ``BuildCancelledError`` naming ``what`` if the token is set."""
        if self._event.is_set():
            raise BuildCancelledError(f"{what}: cancelled")

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, waking early when cancelled; True if cancelled."""
        return self._event.wait(timeout)


def check(cancel: CancelToken | None, what: str) -> None:
    """``cancel.check(what)`` when there is a token."""
    if cancel is not None:
        cancel.check(what)
