"""``create_app(services, secret)``: the HTTP server's routes over the service layer.

- ``POST /webhook``: a GitHub delivery. The body is read with a 25 MB cap (413 past
  it), the ``X-Hub-Signature-256`` HMAC is checked in constant time (401, nothing
  kept, when missing or wrong), the payload must be a JSON object (400). The delivery
  is committed to the store before the answer: 202 for a new one, 200 for a copy of
  one already kept (nothing else happens), 200 for ``ping``. Nothing else is done in
  the request. Counted (by answer status) and timed for ``/metrics``.
- ``GET /healthz``: the process answers. ``GET /readyz``: the database answers and its
  schema is at the newest migration (503 otherwise).
- ``GET /metrics``: Prometheus text; open (aggregate counts only, no names or secrets).
- ``/api/v1/...`` (``api.v1``, ``api.v1_ops``): runs, logs, queue, hosts, learning;
  bearer tokens (read scope for GETs, write for POSTs). ``/openapi.json``, ``/docs``.
- ``/mcp``: the MCP server over streamable HTTP, stateless, behind the same bearer
  tokens (``api.mcp``).
- The dashboard (``vmrunner.dashboard``).

Errors are JSON ``{"error": {"kind", "message", ...}}``, never a stack trace
(``api.errors``); API request bodies are capped (413).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from vmrunner.api import errors, v1, v1_ops
from vmrunner.api.mcp import mount as mount_mcp
from vmrunner.api.metrics import CONTENT_TYPE, Metrics
from vmrunner.api.models import Ready
from vmrunner.dashboard import mount as mount_dashboard
from vmrunner.github.webhook import MAX_BODY, WebhookError, parse, verify
from vmrunner.services.api_queries import readiness
from vmrunner.services.webhooks import intake

log = logging.getLogger(__name__)
DESCRIPTION = (
    "vmrunner's HTTP API: runs (exec, workflow, systest), their result documents and "
    "logs (followed live as server-sent events), the shared queue, the workers and the "
    "learning store. Authenticate with `Authorization: Bearer <token>` (`vmrunner token "
    "create --scope read|write`): read scope for GETs, write scope for POSTs."
)


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
    app = FastAPI(title="vmrunner", version="1", description=DESCRIPTION, docs_url="/docs",
                  redoc_url=None, openapi_url="/openapi.json")  # fmt: skip
    app.state.services = services
    metrics = Metrics(services)
    errors.install(app)
    app.add_middleware(errors.BodyCap)

    @app.get("/healthz", tags=["server"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["server"], response_model=Ready, responses={503: {"model": Ready}})
    async def readyz() -> JSONResponse:
        """Ready when the database answers and its schema is at the newest migration."""
        found = await run_in_threadpool(readiness, services)
        body = Ready(ready=found.ready, database=found.database, revision=found.revision,
                     head=found.head, message=found.message)  # fmt: skip
        return JSONResponse(body.model_dump(), status_code=200 if found.ready else 503)

    @app.get("/metrics", tags=["server"], response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})  # fmt: skip
    async def prometheus() -> Response:
        """Prometheus text: runs, queue depth, run durations, webhook intake, VM accels."""
        return Response(await run_in_threadpool(metrics.text), media_type=CONTENT_TYPE)

    @app.post("/webhook", include_in_schema=False)
    async def webhook(request: Request) -> JSONResponse:
        started = time.perf_counter()
        answer = await _webhook(request)
        metrics.webhook(answer.status_code, time.perf_counter() - started)
        return answer

    async def _webhook(request: Request) -> JSONResponse:
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

    app.include_router(v1.router)
    app.include_router(v1_ops.router)
    described = app.openapi
    app.openapi = lambda: v1.tidy_openapi(described())  # type: ignore[method-assign]
    mount_mcp(app, services)
    mount_dashboard(app, services)
    return app
