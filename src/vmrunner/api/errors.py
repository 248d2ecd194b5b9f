"""Errors of the HTTP API as JSON ``{"error": {"kind", "message", ...}}``, mapped from the
exception tree; never a stack trace. And the cap on request bodies (413).

=========================================  ======  =====================================
exception                                  status  ``kind``
=========================================  ======  =====================================
``RunNotFoundError``                        404    ``not_found``
``RecipeInvalidError`` / located input      422    ``invalid`` (+ ``file``, ``line``)
``ConfigError`` / ``UserInputError``        422    ``invalid``
request validation (pydantic)               422    ``invalid`` (+ ``fields``)
``StoreError``                              503    ``store``
any other ``VmrunnerError``                 500    ``harness``
anything else                               500    ``internal`` (logged, details hidden)
=========================================  ======  =====================================
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vmrunner.errors import ConfigError, RunNotFoundError, StoreError, UserInputError, VmrunnerError

log = logging.getLogger(__name__)
API_MAX_BODY = 2 * 1024 * 1024
HTTP_KINDS = {401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
              406: "not_acceptable", 413: "too_large", 415: "unsupported_media_type"}  # fmt: skip


def error_response(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    """The JSON error answer."""
    body = {"kind": kind, "message": message, **{k: v for k, v in extra.items() if v is not None}}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _where(exc: VmrunnerError) -> dict[str, Any]:
    """File and line of an input error that carries them (recipes, workflows)."""
    file = getattr(exc, "filename", None) or getattr(exc, "file", None)
    line = getattr(exc, "line", None)
    return {"file": str(file) if file else None, "line": line if isinstance(line, int) else None}


def from_exception(exc: VmrunnerError) -> JSONResponse:
    """The answer for an error of the exception tree."""
    if isinstance(exc, RunNotFoundError):
        return error_response(404, "not_found", str(exc))
    if isinstance(exc, ConfigError | UserInputError):
        return error_response(422, "invalid", str(exc), **_where(exc))
    if isinstance(exc, StoreError):
        log.warning("store error answering a request: %s", exc)
        return error_response(503, "store", "the database failed; try again")
    log.warning("harness error answering a request: %s", exc)
    return error_response(500, "harness", str(exc))


def _validation(exc: RequestValidationError) -> JSONResponse:
    fields, parts = [], []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        tag = (err.get("ctx") or {}).get("discriminator")
        if err.get("type", "").startswith("union_tag_") and tag:  # the body's "kind"
            where = ".".join(filter(None, (where.removeprefix("body"), str(tag).strip("'"))))
        fields.append(where)
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return error_response(422, "invalid", "; ".join(parts[:10]), fields=fields)


def install(app: FastAPI) -> None:
    """Map every exception raised by a route to a JSON error answer."""

    async def on_vmrunner(_r: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, VmrunnerError)
        return from_exception(exc)

    async def on_validation(_r: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _validation(exc)

    async def on_http(_r: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        kind = HTTP_KINDS.get(exc.status_code, "http")
        return error_response(exc.status_code, kind, str(exc.detail))

    async def on_other(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal", "internal error (see the server's log)")

    app.add_exception_handler(VmrunnerError, on_vmrunner)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(Exception, on_other)


class BodyCap:
    """ASGI middleware: a request body to ``prefix`` over ``limit`` bytes is answered 413
    (by its declared length at once, or as it streams past the limit); a body
    within the limit is read whole, then handed on."""

    def __init__(self, app: ASGIApp, prefix: str = "/api/", limit: int = API_MAX_BODY) -> None:
        self.app, self.prefix, self.limit = app, prefix, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            await self._too_large(scope, receive, send)
            return
        body, more = b"", True
        while more:  # API bodies are small: read it all first, then hand it on
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > self.limit:
                await self._too_large(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = error_response(413, "too_large", f"the request body is over {self.limit} bytes")
        await answer(scope, receive, send)
