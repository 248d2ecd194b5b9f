"""The dashboard's routes, mounted on the server's FastAPI app by :func:`mount`.

- ``GET /``: runs (filters ``kind``, ``status``, ``repo``) and the queue per concurrency
  group and host; the page polls itself with htmx (a request with ``HX-Request`` gets
  only that part) so statuses change without a reload.
- ``GET /runs/{id}``: the run's jobs and steps (or systest phases) with durations and
  statuses, the failed step's log tail, the learning hints, the cancel and rerun
  buttons (write scope); the summary polls itself while the run is active.
- ``GET /runs/{id}/log``: the live log as server-sent events (``Last-Event-ID`` resumes).
- ``POST /runs/{id}/cancel``, ``POST /runs/{id}/rerun`` (the API's rerun: a workflow is
  queued again, an exec or systest started again): write scope and the CSRF token.
- ``GET /learning``: failure signatures, flaky commands, lessons with candidate fixes,
  the command graph around ``?command=`` as server-drawn SVG.
- ``GET|POST /login``, ``POST /logout``: a token in, a signed cookie session out.

Every page needs a session (read scope); without one a page redirects to ``/login``
and the other routes answer 401. Static files (htmx, the stylesheet, the log follower)
are served from the package at ``/static/``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from markupsafe import Markup

from vmrunner.dashboard.graphsvg import render_svg
from vmrunner.dashboard.session import LIFETIME_S, Session, csrf_ok, encode, new_session
from vmrunner.dashboard.views import run_detail, run_row
from vmrunner.dashboard.web import (
    HEADERS,
    STATIC,
    current_session,
    form,
    log_events,
    page,
    redirect,
    safe_next,
    set_cookie,
)
from vmrunner.errors import RunNotFoundError, UserInputError, VmrunnerError
from vmrunner.services.api_queries import hosts, queue_view
from vmrunner.services.api_submit import rerun
from vmrunner.services.dashboard_queries import learning_overview, session_key
from vmrunner.services.requests import run_filter
from vmrunner.services.tokens import authenticate

FILTERS = ("kind", "status", "repo")
KINDS = ("exec", "workflow", "systest")
STATUSES = ("queued", "running", "success", "failure", "cancelled", "timeout", "error")


class Dashboard:
    """The route handlers over one ``Services`` (see the module's docstring)."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self._key: bytes | None = None

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = session_key(self.services)
        return self._key

    async def session(self, request: Request) -> Session | None:
        return await current_session(request, self.services, self.key)

    def unauthorised(self, request: Request) -> Response:
        if request.headers.get("hx-request"):
            return PlainTextResponse(
                "log in again", 401, headers={**HEADERS, "HX-Redirect": "/login"}
            )
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect(f"/login?next={_quote(target)}")

    # -- the runs list -------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return self.unauthorised(request)
        chosen = {k: request.query_params.get(k) or "" for k in FILTERS}
        try:
            flt = run_filter(kind=chosen["kind"] or None, status=chosen["status"] or None,
                             repo=chosen["repo"] or None, limit=50)  # fmt: skip
        except VmrunnerError as exc:
            return page("error.html", 400, message=str(exc), session=session)
        runs, queue, workers = await asyncio.to_thread(self._index_data, flt)
        ctx: dict[str, Any] = {"runs": runs, "queue": queue, "workers": workers, "filters": chosen,
               "query": request.url.query, "session": session, "kinds": KINDS, "statuses": STATUSES}  # fmt: skip
        return page("_live.html" if request.headers.get("hx-request") else "index.html", **ctx)

    def _index_data(
        self, flt: Any
    ) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
        now = time.time()
        runs = [run_row(r, now) for r in self.services.list_runs(flt)]
        return runs, queue_view(self.services), hosts(self.services)

    # -- one run -------------------------------------------------------------------------
    async def run(self, request: Request, run_id: str) -> Response:
        session = await self.session(request)
        if session is None:
            return self.unauthorised(request)
        try:
            rec = await asyncio.to_thread(self.services.get, run_id)
        except UserInputError as exc:
            return page("error.html", 404, message=str(exc), session=session)
        run = run_detail(rec, time.time())
        name = "_summary.html" if request.headers.get("hx-request") else "run.html"
        return page(name, run=run, session=session)

    async def log(self, request: Request, run_id: str) -> Response:
        if await self.session(request) is None:
            return PlainTextResponse("log in first", 401, headers=HEADERS)
        try:
            await asyncio.to_thread(self.services.get, run_id)
        except UserInputError as exc:
            return PlainTextResponse(str(exc), 404, headers=HEADERS)
        last = request.headers.get("last-event-id", "")
        start = int(last) if last.isdigit() else 0
        return StreamingResponse(log_events(self.services, run_id, start),
                                 media_type="text/event-stream",
                                 headers={**HEADERS, "X-Accel-Buffering": "no"})  # fmt: skip

    async def _writer(self, request: Request) -> tuple[Session | None, Response | None]:
        """The session of a POST that needs write scope and a valid CSRF token, or the
        answer refusing it."""
        session = await self.session(request)
        if session is None:
            return None, self.unauthorised(request)
        fields = await form(request)
        if not csrf_ok(session, fields.get("csrf")):
            return None, page(
                "error.html", 403, message="the form expired: reload the page", session=session
            )
        if not session.can_write:
            return None, page(
                "error.html", 403, message="this needs a token with write scope", session=session
            )
        return session, None

    async def cancel(self, request: Request, run_id: str) -> Response:
        session, refused = await self._writer(request)
        if refused is not None:
            return refused
        try:
            await asyncio.to_thread(self.services.cancel, run_id)
        except UserInputError as exc:
            return page("error.html", 404, message=str(exc), session=session)
        return redirect(f"/runs/{_quote(run_id)}")

    async def rerun(self, request: Request, run_id: str) -> Response:
        session, refused = await self._writer(request)
        if refused is not None:
            return refused
        try:
            ids = await rerun(self.services, run_id)
        except UserInputError as exc:
            status = 404 if isinstance(exc, RunNotFoundError) else 400
            return page("error.html", status, message=str(exc), session=session)
        return redirect(f"/runs/{_quote(ids[0])}")

    # -- learning ------------------------------------------------------------------------
    async def learning(self, request: Request) -> Response:
        session = await self.session(request)
        if session is None:
            return self.unauthorised(request)
        command = (request.query_params.get("command") or "").strip() or None
        try:
            data = await asyncio.to_thread(learning_overview, self.services, command)
        except VmrunnerError as exc:
            return page("error.html", 500, message=str(exc), session=session)
        related = data["related"]
        svg = Markup(render_svg(related)) if related and related.get("observations") else None
        return page("learning.html", session=session, svg=svg, **data)

    # -- login ---------------------------------------------------------------------------
    async def login_form(self, request: Request) -> Response:
        return page("login.html", next=safe_next(request.query_params.get("next")), session=None)

    async def login(self, request: Request) -> Response:
        fields = await form(request)
        target = safe_next(fields.get("next"))
        token = (fields.get("token") or "").strip()
        info = await asyncio.to_thread(authenticate, self.services, token) if token else None
        if info is None or not info.allows("read"):
            return page(
                "login.html", 401, next=target, error="unknown or revoked token", session=None
            )
        response = redirect(target)
        set_cookie(
            response,
            request,
            encode(self.key, new_session(info.id, info.name, info.scope)),
            LIFETIME_S,
        )
        return response

    async def logout(self, request: Request) -> Response:
        session = await self.session(request)
        fields = await form(request)
        if session is not None and not csrf_ok(session, fields.get("csrf")):
            return page(
                "error.html", 403, message="the form expired: reload the page", session=session
            )
        response = redirect("/login")
        set_cookie(response, request, "", 0)
        return response


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="/")


def mount(app: FastAPI, services: Any) -> None:
    """Add the dashboard's routes and ``/static/`` to ``app`` (see the module's docstring)."""
    d = Dashboard(services)
    html: dict[str, Any] = {"response_class": HTMLResponse, "include_in_schema": False}
    app.add_api_route("/", d.index, methods=["GET"], **html)
    app.add_api_route("/runs/{run_id}", d.run, methods=["GET"], **html)
    app.add_api_route("/runs/{run_id}/log", d.log, methods=["GET"], include_in_schema=False)
    app.add_api_route("/runs/{run_id}/cancel", d.cancel, methods=["POST"], **html)
    app.add_api_route("/runs/{run_id}/rerun", d.rerun, methods=["POST"], **html)
    app.add_api_route("/learning", d.learning, methods=["GET"], **html)
    app.add_api_route("/login", d.login_form, methods=["GET"], **html)
    app.add_api_route("/login", d.login, methods=["POST"], **html)
    app.add_api_route("/logout", d.logout, methods=["POST"], **html)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
