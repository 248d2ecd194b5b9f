"""Submitting runs over the HTTP API: exec and systest run in the server's own process
as background tasks; workflows are queued in the shared queue exactly as the scheduler
queues a webhook's, so a worker (any host) runs them.

Every function validates first: bad input raises ``ConfigError``/``UserInputError``
(an invalid recipe: ``RecipeInvalidError`` with file and line) before anything is kept.
``start_exec``/``start_systest`` return the run id as soon as the run is kept (status
``queued``); the run goes on in the background.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, cast

from vmrunner.errors import ConfigError, UserInputError
from vmrunner.github.repos import ZERO_SHA, split_repo
from vmrunner.services.core import RunHandle, Services
from vmrunner.services.dispatch import DeliveryPlan, plan_delivery
from vmrunner.services.exec import ExecRequest, resolve, run_exec
from vmrunner.services.scheduler import (
    enqueue_run,
    github_client,
    queue_workflow,
    repo_cache,
    reporter,
)
from vmrunner.services.systests import SystestRequest, run_systest, validate
from vmrunner.store.queue import ItemSpec, Queue
from vmrunner.store.runs import RunStore
from vmrunner.systest.recipe import load_text

__all__ = ["SystestRequest", "rerun", "start_exec", "start_systest", "submit_workflow"]

WORKFLOW_EVENTS = ("push", "workflow_dispatch")


class WorkflowInvalidError(UserInputError):
    """A workflow file of the repository that cannot run: ``file`` (its path in the
    repository) and ``line``."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file, self.line = file, line
        super().__init__(f"{file}:{line or 1}: {message}")


_tasks: set[asyncio.Task[Any]] = set()  # background runs (kept referenced until done)


class _Tap:
    """``services`` whose ``accept`` also hands the new run's id to ``accepted``."""

    def __init__(self, services: Services, accepted: asyncio.Future[str]) -> None:
        self._services, self._accepted = services, accepted

    def __getattr__(self, name: str) -> Any:
        return getattr(self._services, name)

    def accept(self, kind: str, request: Mapping[str, Any], **kw: Any) -> RunHandle:
        handle = self._services.accept(kind, request, **kw)
        if not self._accepted.done():
            self._accepted.set_result(handle.id)
        return handle


async def _start(services: Services, body: Callable[[Services], Coroutine[Any, Any, Any]]) -> str:
    """Run ``body(services)`` as a background task; its run's id once it is kept. An error
    raised before the run is kept (bad input) is raised here."""
    accepted: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(body(cast(Services, _Tap(services, accepted))))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    task.add_done_callback(_retrieve)
    await asyncio.wait({accepted, task}, return_when=asyncio.FIRST_COMPLETED)
    if accepted.done():
        return accepted.result()
    task.result()  # raises the bad input
    raise ConfigError("the run ended before it was kept")  # pragma: no cover


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A background run's own failure is kept in its document; do not log it twice."""
    if not task.cancelled():
        task.exception()


def _ignore(_chunk: bytes) -> None:
    return None


async def start_exec(services: Services, req: ExecRequest) -> str:
    """Start ``req`` in the background (its output goes to the run's live log)."""
    resolve(services.settings, req)
    return await _start(services, lambda s: run_exec(s, req, on_stdout=_ignore, on_stderr=_ignore))


def recipe_request(
    services: Services, recipe: str, filename: str, **options: Any
) -> SystestRequest:
    """A systest request for recipe text ``recipe`` (checked now: ``RecipeInvalidError``
    names ``filename`` and the line), written under the state directory."""
    name = Path(filename).name
    if not name.endswith((".yml", ".yaml")):
        raise ConfigError(f"recipe_name must end in .yml or .yaml, got {filename!r}")
    load_text(recipe, name)
    folder = services.settings.state_dir / "api-recipes" / secrets.token_hex(8)
    folder.mkdir(mode=0o700, parents=True)
    (folder / name).write_text(recipe)
    return validate(SystestRequest(config=str(folder / name), **options), services.settings.accel)


async def start_systest(services: Services, req: SystestRequest) -> str:
    """Start the system test ``req`` in the background."""
    validate(req, services.settings.accel)
    return await _start(services, lambda s: run_systest(s, req))


# -- workflows: queued as the scheduler queues a delivery's ---------------------------------


def _payload(repo: str, event: str, ref: str, sha: str, workflow: str | None,
             inputs: Mapping[str, str]) -> dict[str, Any]:  # fmt: skip
    base = {"repository": {"full_name": repo, "name": repo.split("/")[1],
                           "owner": {"login": repo.split("/")[0]}},
            "sender": {"login": "vmrunner-api"}}  # fmt: skip
    full = ref if ref.startswith("refs/") else f"refs/heads/{ref}"
    if event == "push":
        return {**base, "ref": full, "before": ZERO_SHA, "after": sha, "commits": []}
    return {**base, "ref": full, "workflow": workflow, "inputs": dict(inputs)}


def plan_workflow(
    services: Services, repo: str, ref: str, event: str, workflow: str | None,
    inputs: Mapping[str, str],
) -> DeliveryPlan:  # fmt: skip
    """What ``event`` at ``ref`` of ``repo`` triggers (fetched through github_git_url).
    Blocking (git). Raises ``UserInputError`` for a bad repository, ref, event, a
    workflow that cannot load (with file and line) or nothing triggered."""
    split_repo(repo)
    if event not in WORKFLOW_EVENTS:
        raise ConfigError(f"event must be one of {', '.join(WORKFLOW_EVENTS)}, got {event!r}")
    if event == "workflow_dispatch" and not workflow:
        raise ConfigError("event workflow_dispatch needs workflow (its path in the repository)")
    repos = repo_cache(services.settings, github_client(services.settings))
    sha = repos.fetch(repo, ref)
    plan = plan_delivery(event, _payload(repo, event, ref, sha, workflow, inputs), repos)
    if plan.errors:
        err = plan.errors[0]
        raise WorkflowInvalidError(err.workflow, err.line, err.message)
    if not plan.units:
        why = "; ".join(f"{wf}: {reason}" for wf, reason in plan.not_triggered)
        raise UserInputError(
            f"no workflow of {repo} at {ref} runs on {event}" + (f" ({why})" if why else "")
        )
    return plan


def submit_workflow(services: Services, plan: DeliveryPlan) -> list[str]:
    """Queue every workflow ``plan`` triggers (one run each, pending in its concurrency
    group, older pending runs of the group superseded); their run ids."""
    rep = reporter(services)
    return [queue_workflow(services, rep, plan, unit, "api") for unit in plan.units]


# -- rerun ----------------------------------------------------------------------------------


async def rerun(services: Services, run_id: str) -> list[str]:
    """Run ``run_id`` again: a workflow is queued again (same commit, event and payload),
    an exec or systest is started again with the same request; the new run ids."""
    rec = await asyncio.to_thread(services.get, run_id)
    if rec.kind == "workflow":
        return [await asyncio.to_thread(_requeue, services, run_id, rec.request, rec.title)]
    if rec.kind == "exec":
        return [await start_exec(services, _exec_again(run_id, rec.request))]
    names = {f.name for f in fields(SystestRequest)}
    options = {k: v for k, v in rec.request.items() if k in names}
    for key in ("keep_artifacts", "checks"):
        options[key] = Path(options[key]) if options.get(key) else None
    return [await start_systest(services, SystestRequest(**options))]


def _exec_again(run_id: str, request: Mapping[str, Any]) -> ExecRequest:
    if request.get("env_keys") or request.get("copy_in") or request.get("copy_out"):
        raise UserInputError(
            f"run {run_id} had environment values or copied files, which are not kept: "
            "run it again from the command line"
        )
    names = {f.name for f in fields(ExecRequest)} - {"env", "copy_in", "copy_out"}
    options = {k: v for k, v in request.items() if k in names}
    options["argv"] = tuple(options.get("argv") or ())
    return ExecRequest(**options)


def _requeue(services: Services, run_id: str, request: Mapping[str, Any], title: str) -> str:
    item = Queue(services.store).by_run(run_id)
    if item is None:
        raise UserInputError(
            f"run {run_id} was not queued by the server: run it again with 'vmrunner run'"
        )
    new_request = {**dict(request), "source": "api", "rerun_of": run_id}
    new_id = RunStore(services.store).create(
        "workflow", new_request, title=title, repo=item.repo, branch=item.branch, sha=item.sha,
        queued=True,
    )  # fmt: skip
    spec = ItemSpec(
        run_id=new_id, repo=item.repo, sha=item.sha, ref=item.ref, branch=item.branch,
        workflow=item.workflow, workflow_name=item.workflow_name, event=item.event,
        payload=item.payload, group=item.group, cancel_in_progress=item.cancel_in_progress,
    )  # fmt: skip
    jobs = [(str(j), str(n)) for j, n in request.get("jobs", [])]
    return enqueue_run(services, reporter(services), spec, jobs)
