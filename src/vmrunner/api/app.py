"""``create_app(services, secret)``: the HTTP server's routes over the service layer.

- ``POST /webhook``: a GitHub delivery. The body is read with a 25 MB cap (413 past
  it), the ``X-Hub-Signature-256`` HMAC is checked in constant time (401, nothing
  kept, when missing or wrong), the payload must be a JSON object (400). The delivery
  is committed to the store before the answer: 202 for a new one, 200 for a copy of
  one already kept (nothing else happens), 200 for ``ping``. Nothing else is done in
  the request.
- ``GET /healthz``: the process answers.

Errors are JSON ``{"error": {"kind", "message"}}``, never a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from vmrunner.github.webhook import MAX_BODY, WebhookError, parse, verify
from vmrunner.services.webhooks import intake

log = logging.getLogger(__name__)


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"kind": kind, "message": message}}, status_code=status)


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise WebhookError(413, f"the body is over {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WebhookError(413, f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    services: Any, secret: bytes, *, max_body: int = MAX_BODY,
    on_delivery: Callable[[], None] | None = None,
) -> FastAPI:  # fmt: skip
    """The application; ``services`` is a :class:`~vmrunner.services.core.Services`.
    ``on_delivery()`` is called after a new delivery to act on was kept (it wakes the
    scheduler)."""
    app = FastAPI(title="vmrunner", docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/webhook")
    async def webhook(request: Request) -> JSONResponse:
        try:
            body = await _body(request, max_body)
            verify(secret, body, request.headers.get("x-hub-signature-256"))
            envelope = parse(request.headers.get("x-github-delivery"),
                             request.headers.get("x-github-event"), body)  # fmt: skip
        except WebhookError as exc:
            log.info("webhook refused", extra={"status": exc.status, "why": str(exc)})
            return _error(exc.status, "webhook", str(exc))
        outcome = await run_in_threadpool(intake, services, envelope, body)
        if outcome.status == 202 and on_delivery is not None:
            on_delivery()
        return JSONResponse(outcome.answer, status_code=outcome.status)

    return app
