"""Webhook intake in the service layer: keep a checked delivery, say how to answer.

The delivery is committed before the caller answers GitHub; nothing else happens
here (the triggered workflows are found and queued later, from the kept delivery).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from vmrunner.github.webhook import Envelope
from vmrunner.store.deliveries import DeliveryStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Intake:
    """The HTTP answer for a delivery."""

    status: int
    answer: dict[str, Any]


def intake(services: Any, envelope: Envelope, body: bytes) -> Intake:
    """Keep ``envelope`` (a delivery whose signature was checked). A copy of a kept
    delivery (same ``X-GitHub-Delivery``) changes nothing but its copy count."""
    if envelope.event == "ping":
        status, note = "ignored", "ping"
    elif envelope.known:
        status, note = "received", ""
    else:
        status, note = "ignored", f"event {envelope.event!r} is not one vmrunner acts on"
        log.info("webhook event ignored", extra={"event": envelope.event})
    new = DeliveryStore(services.store).add(
        envelope.delivery_id, envelope.event, body.decode("utf-8"), action=envelope.action,
        repo=envelope.repo, status=status, note=note,
    )  # fmt: skip
    if not new:
        return Intake(200, {"delivery": envelope.delivery_id, "status": "duplicate"})
    if envelope.event == "ping":
        return Intake(200, {"delivery": envelope.delivery_id, "status": "pong"})
    return Intake(202, {"delivery": envelope.delivery_id, "status": status})
