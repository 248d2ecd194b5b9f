"""Which missed webhook deliveries to ask GitHub for again. Pure: no I/O, no clock.

GitHub lists every attempt it made to deliver an event to the App
(``GET /app/hook/deliveries``): the first (``redelivery`` false) and each redelivery,
all with the event's ``guid`` (our ``X-GitHub-Delivery`` id). An event is missed when
no attempt got a 2xx and its guid is not in our ``deliveries`` table. For each missed
event the newest failed attempt is redelivered, unless it was already redelivered
``max_redeliveries`` times (GitHub shows those attempts too), so an endpoint that keeps
failing is not asked for the same event forever.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Protocol

MAX_REDELIVERIES = 3


class Attempt(Protocol):
    """One delivery attempt as GitHub lists it (``vmrunner.github.client.HookDelivery``)."""

    @property
    def id(self) -> int: ...
    @property
    def guid(self) -> str: ...
    @property
    def redelivery(self) -> bool: ...
    @property
    def status_code(self) -> int: ...


def to_redeliver(
    attempts: Iterable[Attempt], known: Collection[str], max_redeliveries: int = MAX_REDELIVERIES
) -> list[int]:
    """The attempt ids to redeliver (one per missed event, oldest event first): events
    whose guid is not in ``known``, none of whose attempts got a 2xx, redelivered fewer
    than ``max_redeliveries`` times."""
    by_guid: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        by_guid.setdefault(attempt.guid, []).append(attempt)
    chosen: list[int] = []
    for guid, tries in by_guid.items():
        if guid in known or any(200 <= t.status_code < 300 for t in tries):
            continue
        if sum(t.redelivery for t in tries) >= max_redeliveries:
            continue
        chosen.append(max(t.id for t in tries))
    return sorted(chosen)
