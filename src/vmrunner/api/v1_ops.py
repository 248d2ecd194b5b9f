"""``/api/v1``: the shared queue, the workers, and the learning answers (read scope)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from vmrunner.api.auth import ReadToken
from vmrunner.api.v1 import ERRORS, RunId
from vmrunner.services import api_queries
from vmrunner.services.api_queries import (
    LearningStats,
    Lessons,
    Prediction,
    Related,
    RunExplanation,
)
from vmrunner.services.learning import open_learning

from .models import HostList, QueueView

router = APIRouter(prefix="/api/v1", responses=ERRORS)
T = TypeVar("T")
Command = Annotated[str, Query(min_length=1, max_length=4096, description="A shell command.")]
Repo = Annotated[str | None, Query(max_length=255)]


@router.get("/queue", response_model=QueueView, tags=["queue"])
async def queue(request: Request, _t: ReadToken) -> QueueView:
    """Pending and claimed runs of the shared queue, per concurrency group and per host."""
    view = await run_in_threadpool(api_queries.queue_view, request.app.state.services)
    return QueueView.model_validate(view)


@router.get("/hosts", response_model=HostList, tags=["queue"])
async def hosts(request: Request, _t: ReadToken) -> HostList:
    """The registered workers: capacity, running, draining, last heartbeat."""
    found = await run_in_threadpool(api_queries.hosts, request.app.state.services)
    return HostList.model_validate({"workers": found})


async def _learning(request: Request, ask: Callable[[Any], T]) -> T:
    def run() -> T:
        with open_learning(request.app.state.services.settings) as svc:
            return ask(svc)

    return await run_in_threadpool(run)


@router.get("/learning/stats", response_model=LearningStats, tags=["learning"])
async def stats(
    request: Request, _t: ReadToken, top: Annotated[int, Query(ge=1, le=100)] = 10
) -> Any:
    """Totals, failing and flaky commands, failure signatures, slowest commands."""
    return await _learning(request, lambda svc: svc.stats(top=top))


@router.get("/learning/predict", response_model=Prediction, tags=["learning"])
async def predict(
    request: Request, _t: ReadToken, command: Command, repo: Repo = None,
    after: Annotated[str | None, Query(max_length=4096)] = None,
) -> Any:  # fmt: skip
    """How likely ``command`` is to succeed, from what was seen."""
    return await _learning(request, lambda svc: svc.predict(command, repo=repo, after=after))


@router.get("/learning/related", response_model=Related, tags=["learning"])
async def related(request: Request, _t: ReadToken, command: Command, repo: Repo = None) -> Any:
    """What runs before and after ``command``, and what it fails with."""
    return await _learning(request, lambda svc: svc.related(command, repo=repo))


@router.get("/learning/lessons", response_model=Lessons, tags=["learning"])
async def lessons(
    request: Request, _t: ReadToken,
    min_occurrences: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> Any:  # fmt: skip
    """Failure signatures seen often enough to be lessons, with candidate fixes."""
    return await _learning(request, lambda svc: svc.lessons(min_occurrences=min_occurrences))


@router.get("/runs/{run_id}/explain", response_model=RunExplanation, tags=["learning"])
async def explain(request: Request, _t: ReadToken, run_id: RunId) -> Any:
    """Why the run's steps failed: signatures, where else seen, lessons, flakiness."""
    await run_in_threadpool(request.app.state.services.get, run_id)  # 404 for no such run
    return await _learning(request, lambda svc: svc.explain(run_id))
