"""``/api/v1/runs``: list, show, logs (plain or followed live as server-sent events),
submit, cancel and rerun runs. Every route needs a bearer token (read for GETs, write
for POSTs); answers are the models of ``api.models``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from fastapi.responses import Response, StreamingResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from vmrunner.api.auth import ReadToken, WriteToken
from vmrunner.api.models import (
    ErrorBody,
    ExecSubmit,
    Kind,
    RunDetail,
    RunPage,
    RunSummary,
    Status,
    Submitted,
    SystestSubmit,
    WorkflowSubmit,
)
from vmrunner.errors import RunNotFoundError, UserInputError
from vmrunner.services import api_submit
from vmrunner.services.exec import ExecRequest
from vmrunner.services.follow import follow
from vmrunner.services.requests import run_filter

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": why}
    for code, why in ((401, "No valid token"), (403, "The token's scope is too narrow"),
                      (404, "No such run"), (413, "The body is too large"),
                      (422, "Invalid input (the field, or the file and line)"),
                      (503, "The database failed"))
}  # fmt: skip
router = APIRouter(prefix="/api/v1", tags=["runs"], responses=ERRORS)
LOG_FILE_CHUNK = 65536


def summary(rec: Any) -> RunSummary:
    return RunSummary(
        id=rec.id, kind=rec.kind, status=rec.status, title=rec.title, created_at=rec.created_at,
        started_at=rec.started_at, finished_at=rec.finished_at, host=rec.host, repo=rec.repo,
        branch=rec.branch, sha=rec.sha, cancel_requested=rec.cancel_requested,
    )  # fmt: skip


def _known(run_id: str) -> str:
    """A run id as the store has them (a number); anything else is no run (404)."""
    if not (run_id.isdigit() and len(run_id) <= 18):
        raise RunNotFoundError(f"no run {run_id[:40]!r} (see 'vmrunner runs list')")
    return run_id


RunId = Annotated[str, Depends(_known)]


def _services(request: Request) -> Any:
    return request.app.state.services


@router.get("/runs", response_model=RunPage)
async def list_runs(
    request: Request, _t: ReadToken,
    kind: Kind | None = None, status: Status | None = None,
    repo: Annotated[str | None, Query(max_length=255)] = None,
    branch: Annotated[str | None, Query(max_length=255)] = None,
    host: Annotated[str | None, Query(max_length=255)] = None,
    before: Annotated[int | None, Query(ge=1, le=2**62, description="Older than this run id.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> RunPage:  # fmt: skip
    """Runs, newest first, filtered; ``next`` pages to older ones."""
    flt = run_filter(kind=kind, status=status, repo=repo, branch=branch, host=host,
                     limit=limit, before=before)  # fmt: skip
    found = await run_in_threadpool(_services(request).list_runs, flt)
    page = [summary(r) for r in found]
    following = None
    if len(page) == limit:
        query = {k: v for k, v in request.query_params.items() if k != "before"}
        following = f"/api/v1/runs?{urlencode({**query, 'before': page[-1].id})}"
    return RunPage(runs=page, next=following)


@router.get("/runs/{run_id}", response_model=RunDetail)
async def get_run(request: Request, _t: ReadToken, run_id: RunId) -> RunDetail:
    """A run: its record, and its result document once it is final."""
    rec = await run_in_threadpool(_services(request).get, run_id)
    return RunDetail.model_validate({
        "run": summary(rec), "request": dict(rec.request),
        "document": dict(rec.document) if rec.document and not rec.active else None,
        "logs": sorted(rec.logs),
    })  # fmt: skip


LOG_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The log as text, or followed as server-sent events (one event per "
                         "line, its id the line number)",
          "content": {"text/plain": {"schema": {"type": "string"}},
                      "text/event-stream": {"schema": {"type": "string"}}}},
}  # fmt: skip


@router.get("/runs/{run_id}/logs", response_model=None, responses=LOG_RESPONSES)
async def get_logs(
    request: Request, _t: ReadToken, run_id: RunId,
    job: Annotated[str | None, Query(max_length=255, description="Logs of jobs matching.")] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
    last_event_id: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:  # fmt: skip
    """The run's log as text; with ``Accept: text/event-stream``, the live log followed
    until the run ends (resume with ``Last-Event-ID``)."""
    services = _services(request)
    if accept and "text/event-stream" in accept:
        await run_in_threadpool(services.get, run_id)
        start = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
        return EventSourceResponse(_events(services, run_id, job, start), ping=15)
    files = await run_in_threadpool(services.log_files, run_id, job)
    return StreamingResponse(_concat(files), media_type="text/plain; charset=utf-8")


def tidy_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """The logs' 200 answer is text or an event stream, never JSON (FastAPI adds JSON as
    the route's default media type); idempotent."""
    ok = schema["paths"]["/api/v1/runs/{run_id}/logs"]["get"]["responses"]["200"]
    ok.get("content", {}).pop("application/json", None)
    return schema


async def _events(services: Any, run_id: str, job: str | None, start: int) -> AsyncIterator[Any]:
    async for number, text in follow(services, run_id, job, start):
        yield ServerSentEvent(data=text, id=str(number), event="line")
    yield ServerSentEvent(data="", event="end")


async def _concat(files: list[tuple[str, Any]]) -> AsyncIterator[bytes]:
    for name, path in files:
        if len(files) > 1:
            yield f"== {name} ==\n".encode()
        try:
            with path.open("rb") as f:
                while chunk := f.read(LOG_FILE_CHUNK):
                    yield chunk
        except FileNotFoundError:
            continue


Submit = Annotated[ExecSubmit | SystestSubmit | WorkflowSubmit, Body(discriminator="kind")]


@router.post("/runs", status_code=202, response_model=Submitted)
async def submit(request: Request, body: Submit, _t: WriteToken) -> Submitted:
    """Submit a run: exec and systest start here at once, workflows are queued."""
    services = _services(request)
    if isinstance(body, ExecSubmit):
        req = ExecRequest(
            argv=tuple(body.argv), image=body.image, accel=body.accel, cpus=body.cpus,
            memory_mib=body.memory_mib, timeout=body.timeout, network=body.network,
            env=tuple(body.env.items()), workdir=body.workdir, boot_mode=body.boot_mode,
        )  # fmt: skip
        ids = [await api_submit.start_exec(services, req)]
    elif isinstance(body, SystestSubmit):
        ids = [await api_submit.start_systest(services, await _systest(services, body))]
    else:
        plan = await run_in_threadpool(api_submit.plan_workflow, services, body.repo, body.ref,
                                       body.event, body.workflow, body.inputs)  # fmt: skip
        ids = await run_in_threadpool(api_submit.submit_workflow, services, plan)
    return Submitted(id=ids[0], ids=ids)


async def _systest(services: Any, body: SystestSubmit) -> api_submit.SystestRequest:
    options: dict[str, Any] = {"flavor": body.flavor, "host": body.host, "boot_timeout": body.boot_timeout,
               "accel": body.accel, "cpus": body.cpus, "memory_mib": body.memory_mib}  # fmt: skip
    if body.recipe is not None:
        return await run_in_threadpool(
            api_submit.recipe_request, services, body.recipe, body.recipe_name, **options
        )
    if not body.config or body.flavor != "nixos":
        raise UserInputError(
            "a systest needs recipe (a debian recipe's YAML text) or, with flavor nixos, "
            "config (a flake reference)"
        )
    return api_submit.SystestRequest(config=body.config, **options)


@router.post("/runs/{run_id}/cancel", response_model=RunSummary)
async def cancel(request: Request, _t: WriteToken, run_id: RunId) -> RunSummary:
    """Ask for the run to be cancelled (a finished run is returned unchanged)."""
    return summary(await run_in_threadpool(_services(request).cancel, run_id))


@router.post("/runs/{run_id}/rerun", status_code=202, response_model=Submitted)
async def rerun(request: Request, _t: WriteToken, run_id: RunId) -> Submitted:
    """Run it again: a workflow is queued again, an exec or systest started again."""
    ids = await api_submit.rerun(_services(request), run_id)
    return Submitted(id=ids[0], ids=ids)
