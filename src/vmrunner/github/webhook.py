"""A GitHub webhook delivery, checked and parsed. Pure: no I/O, no clock.

The signature is ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``
with the webhook secret, compared in constant time. Only SHA-256 is accepted: the old
``X-Hub-Signature`` (SHA-1) header is ignored, so a request signed only with it fails.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

MAX_BODY = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
KNOWN_EVENTS = frozenset({"ping", "push", "pull_request", "workflow_dispatch", "check_suite",
                          "check_run"})  # fmt: skip


class WebhookError(ValueError):
    """A delivery that cannot be taken; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> None:
    """Raise ``WebhookError`` (401) unless ``header`` is the SHA-256 signature of ``body``."""
    if not header:
        raise WebhookError(401, "missing X-Hub-Signature-256")
    algorithm, _, _digest = header.partition("=")
    if algorithm != "sha256":
        raise WebhookError(401, f"unsupported signature algorithm {algorithm!r} (sha256 only)")
    if not hmac.compare_digest(sign(secret, body).encode(), header.encode()):
        raise WebhookError(401, "signature does not match the payload")


@dataclass(frozen=True)
class Envelope:
    """What the headers and the top of the payload say about a delivery."""

    delivery_id: str
    event: str
    action: str | None
    repo: str | None
    payload: dict[str, Any]

    @property
    def known(self) -> bool:
        return self.event in KNOWN_EVENTS


def parse(delivery_id: str | None, event: str | None, body: bytes) -> Envelope:
    """The delivery's envelope; ``WebhookError`` (400) for missing headers or a body that
    is not a JSON object."""
    if not delivery_id or len(delivery_id) > 64:
        raise WebhookError(400, "missing or malformed X-GitHub-Delivery")
    if not event or len(event) > 64:
        raise WebhookError(400, "missing or malformed X-GitHub-Event")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise WebhookError(400, f"the payload is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise WebhookError(400, "the payload is not a JSON object")
    repo = payload.get("repository")
    full_name = repo.get("full_name") if isinstance(repo, dict) else None
    action = payload.get("action")
    return Envelope(delivery_id, event, action if isinstance(action, str) else None,
                    full_name if isinstance(full_name, str) else None, payload)  # fmt: skip
