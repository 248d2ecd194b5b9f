"""The dashboard's plumbing: templates, security headers, the session of a request,
form bodies, and the server-sent events of a run's live log.

Every page carries a strict Content-Security-Policy (scripts, styles and connections
from this origin only; no inline script or style), so even markup slipping through
would not run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from vmrunner.dashboard.ansi import LineRenderer
from vmrunner.dashboard.session import COOKIE, Session, decode
from vmrunner.services.follow import follow
from vmrunner.services.tokens import list_tokens

HERE = Path(__file__).parent
STATIC = HERE / "static"
MAX_FORM = 16 * 1024
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")  # fmt: skip
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "same-origin", "Cache-Control": "no-store"}  # fmt: skip
KEEPALIVE_S = 15.0

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True, lstrip_blocks=True,
)  # fmt: skip


def page(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """Template ``name`` rendered with ``context``, with the security headers."""
    html = templates.get_template(name).render(**context)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=HEADERS)


def safe_next(target: str | None) -> str:
    """A local path to go back to after login (anything else: ``/``)."""
    if target and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


async def form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (at most 16 KiB), first values."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items()}


async def current_session(request: Request, services: Any, key: bytes) -> Session | None:
    """The request's session, if its cookie is genuine and its token still live."""
    session = decode(key, request.cookies.get(COOKIE))
    if session is None:
        return None
    tokens = await asyncio.to_thread(list_tokens, services)
    live = any(t.id == session.token_id and not t.revoked for t in tokens)
    return session if live else None


def set_cookie(response: Response, request: Request, value: str, max_age: int) -> None:
    response.set_cookie(COOKIE, value, max_age=max_age, path="/", httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")  # fmt: skip


def _event(kind: str, data: str, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {data}\n\n"


async def log_events(services: Any, run_id: str, start_line: int) -> AsyncIterator[str]:
    """The run's live log as server-sent events: ``line`` events (id: the line number
    from 1, data: the line as HTML -- ANSI colours as spans, everything else escaped,
    no line breaks), comments to keep the connection alive, then one ``end`` event
    with the run's final status."""
    renderer = LineRenderer()
    lines = follow(services, run_id, start_line=start_line).__aiter__()
    step: asyncio.Future[tuple[int, str]] | None = None
    try:
        while True:
            step = step or asyncio.ensure_future(anext(lines))
            done, _ = await asyncio.wait({step}, timeout=KEEPALIVE_S)
            if not done:
                yield ": keepalive\n\n"
                continue
            try:
                number, text = step.result()
            except StopAsyncIteration:
                break
            step = None
            yield _event("line", renderer.feed(text), number)
    finally:
        if step is not None and not step.done():
            step.cancel()
    rec = await asyncio.to_thread(services.get, run_id)
    yield _event("end", rec.status)
